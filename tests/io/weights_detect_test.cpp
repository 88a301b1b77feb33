// Format detection and dispatch by magic bytes (never by extension).
#include <gtest/gtest.h>

#include "io/safetensors.h"
#include "io/weights.h"
#include "test_util.h"
#include "weights_testing.h"

using namespace diffuse;
using namespace diffuse::test;

TEST(Weights, DetectsFormatsByContentNotExtension) {
  const std::string dir = temp_dir();
  io::TensorMap m;
  m["x"] = Tensor::from_vector({1, 2, 3}, {3});
  io::save_safetensors(dir + "/model.ckpt", m);  // a safetensors file with a misleading name
  EXPECT_EQ(io::detect_weight_format(dir + "/model.ckpt"), io::WeightFormat::Safetensors);
  EXPECT_EQ(io::load_weights(dir + "/model.ckpt")["x"].to_float_vector(),
            (std::vector<float>{1, 2, 3}));

  GgufWriter g;
  write_bytes(dir + "/model.safetensors", g.bytes());
  EXPECT_EQ(io::detect_weight_format(dir + "/model.safetensors"), io::WeightFormat::Gguf);
  EXPECT_TRUE(io::load_weights(dir + "/model.safetensors").empty());

  write_zip(dir + "/model.gguf", {{"a/data.pkl", PickleWriter().op('}').finish()}});
  EXPECT_EQ(io::detect_weight_format(dir + "/model.gguf"), io::WeightFormat::TorchZip);

  for (std::string content : {std::string(), std::string("hello"), std::string("{\"a\": 1}"),
                              std::string(100, '\0'), std::string("<html>not a model</html>")}) {
    write_bytes(dir + "/junk.bin", content);
    EXPECT_EQ(io::detect_weight_format(dir + "/junk.bin"), io::WeightFormat::Unknown);
    std::string msg = error_of([&] { io::load_weights(dir + "/junk.bin"); });
    EXPECT_EQ(msg, dir + "/junk.bin: not a safetensors, PyTorch zip or GGUF file");
  }
}

TEST(Weights, ReferenceFilesAreDetected) {
  DF_REQUIRE_REF(sf, "sd1-tiny/sd1-tiny.safetensors");
  DF_REQUIRE_REF(ckpt, "sd1-tiny/sd1-tiny.ckpt");
  EXPECT_EQ(io::detect_weight_format(sf), io::WeightFormat::Safetensors);
  EXPECT_EQ(io::detect_weight_format(ckpt), io::WeightFormat::TorchZip);
}

TEST(Weights, ClearErrorsForLegacyPicklesAndMissingFiles) {
  const std::string dir = temp_dir();
  // a pre-1.6 torch.save file begins with a bare pickle
  write_bytes(dir + "/legacy.pt", PickleWriter().integer(1).finish());
  std::string msg = error_of([&] { io::load_weights(dir + "/legacy.pt"); });
  EXPECT_NE(msg.find("legacy (pre-1.6, non-zip) PyTorch checkpoint"), std::string::npos) << msg;

  msg = error_of([&] { io::load_weights(dir + "/does-not-exist.safetensors"); });
  EXPECT_NE(msg.find(dir + "/does-not-exist.safetensors: cannot open"), std::string::npos) << msg;
  msg = error_of([&] { io::detect_weight_format(dir); });
  EXPECT_NE(msg.find("not a regular file"), std::string::npos) << msg;
}
