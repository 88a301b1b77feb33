// The thread count: capped with a clear error (OpenMP crashes creating tens of thousands).
#include <gtest/gtest.h>

#include <string>

#include "core/error.h"
#include "core/parallel.h"

using namespace diffuse;

namespace {

TEST(Threads, CountIsCappedWithAClearError) {
  const int before = num_threads();
  EXPECT_GE(max_threads(), 4);
  EXPECT_LE(max_threads(), 1024);
  for (int n : {100000, 70000, max_threads() + 1, -1}) {
    std::string msg;
    try {
      set_num_threads(n);
    } catch (const Error& e) {
      msg = e.what();
    }
    EXPECT_NE(msg.find("thread count " + std::to_string(n)), std::string::npos) << msg;
  }
  EXPECT_EQ(num_threads(), before);  // refused counts change nothing
  set_num_threads(1);
  EXPECT_EQ(num_threads(), 1);
  set_num_threads(before);
}

}  // namespace
