// Progress in a log (stderr not a terminal): the first and the last line, not one per step.
#include <gtest/gtest.h>

#include <algorithm>
#include <string>

#include "core/progress.h"

using namespace diffuse;

TEST(Progress, LogsGetTheFirstAndLastLineOfFastWork) {
  testing::internal::CaptureStderr();  // stderr becomes a file: not a terminal
  {
    Progress p("step", 1000);
    for (int i = 1; i <= 1000; ++i) p.update(i, "loss 0.5");
  }
  const std::string out = testing::internal::GetCapturedStderr();
  EXPECT_EQ(std::count(out.begin(), out.end(), '\n'), 2) << out;
  EXPECT_EQ(out.rfind("step 1/1000 [", 0), 0u) << out;
  EXPECT_NE(out.find("\nstep 1000/1000 ["), std::string::npos) << out;
  EXPECT_NE(out.find("loss 0.5\n"), std::string::npos) << out;
}

TEST(Progress, DisabledIsSilent) {
  testing::internal::CaptureStderr();
  {
    Progress p("step", 3, false);
    for (int i = 1; i <= 3; ++i) p.update(i);
  }
  EXPECT_EQ(testing::internal::GetCapturedStderr(), "");
}

TEST(Progress, RatesReadNaturally) {
  EXPECT_EQ(format_rate(2.5), "2.50s/it");
  EXPECT_EQ(format_rate(0.25), "4.00it/s");
}
