// `diffuse bench` on a tiny reference model: the table, and with --json one JSON object on the
// last line keyed by size with every stage's time and the peak memory.
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>
#include <sstream>

#include "model_forms.h"
#include "test_util.h"

using namespace diffuse;

namespace {

std::string last_line(const std::string& out) {
  std::istringstream is(out);
  std::string line, last;
  while (std::getline(is, line))
    if (!line.empty()) last = line;
  return last;
}

TEST(BenchCommand, JsonLastLineKeyedBySize) {
  auto forms = test::model_forms(test::reference_models().at(0));
  ASSERT_FALSE(forms.empty());
  const auto& f = forms.front();
  std::string cmd = std::string(DIFFUSE_CLI_PATH) + " bench -m '" + f.path + "'" +
                    (f.config_dir.empty() ? "" : " --config '" + f.config_dir + "'") +
                    " --size 128,64 --runs 1 --precision fp32 --json 2>&1";
  std::string out;
  ASSERT_EQ(test::run_command(cmd, &out), 0) << out;
  const auto j = nlohmann::json::parse(last_line(out));
  ASSERT_TRUE(j.is_object());
  EXPECT_EQ(j.size(), 2u);
  for (const char* size : {"64", "128"}) {
    ASSERT_TRUE(j.contains(size)) << out;
    const auto& r = j[size];
    for (const char* k : {"unet_step_s", "vae_decode_s", "vae_encode_s", "text_encode_s"}) {
      ASSERT_TRUE(r.contains(k)) << k;
      EXPECT_GT(r[k].get<double>(), 0.0) << k;
    }
    EXPECT_GT(r["peak_rss_mb"].get<double>(), 1.0);
    EXPECT_EQ(r["precision"], "fp32");
  }
  // sizes run in ascending order, so the larger size's peak covers the smaller one's
  EXPECT_GE(j["128"]["peak_rss_mb"].get<double>(), j["64"]["peak_rss_mb"].get<double>());
  EXPECT_NE(out.find("unet_step_s"), std::string::npos);  // the table precedes the JSON
}

// Idle OpenMP threads sleep unless the user chose otherwise: diffuse restarts itself with
// OMP_WAIT_POLICY=passive when neither it nor GOMP_SPINCOUNT is set.
TEST(BenchCommand, WaitingThreadsSleepUnlessTheUserChose) {
  auto forms = test::model_forms(test::reference_models().at(0));
  ASSERT_FALSE(forms.empty());
  const auto& f = forms.front();
  const std::string args = std::string(DIFFUSE_CLI_PATH) + " bench -m '" + f.path + "'" +
                           (f.config_dir.empty() ? "" : " --config '" + f.config_dir + "'") +
                           " --size 64 --runs 1 --stages text --precision fp32 --json 2>&1";
  auto policy = [&](const std::string& env) {
    std::string out;
    EXPECT_EQ(
        test::run_command("env -u OMP_WAIT_POLICY -u GOMP_SPINCOUNT " + env + " " + args, &out), 0)
        << out;
    return nlohmann::json::parse(last_line(out))["64"]["omp_wait_policy"].get<std::string>();
  };
  EXPECT_EQ(policy(""), "passive");
  EXPECT_EQ(policy("OMP_WAIT_POLICY=active"), "active");
  EXPECT_EQ(policy("GOMP_SPINCOUNT=1000"), "default (GOMP_SPINCOUNT)");
}

TEST(BenchCommand, RejectsBadArguments) {
  auto forms = test::model_forms(test::reference_models().at(0));
  ASSERT_FALSE(forms.empty());
  const std::string base = std::string(DIFFUSE_CLI_PATH) + " bench -m '" + forms.front().path + "'";
  std::string out;
  EXPECT_NE(test::run_command(base + " --size 100 2>&1", &out), 0);
  EXPECT_NE(out.find("multiple of 64"), std::string::npos) << out;
  EXPECT_NE(test::run_command(base + " --precision fp8 2>&1", &out), 0);
}

}  // namespace
