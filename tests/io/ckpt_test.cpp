// PyTorch zip checkpoints: the reference .ckpt against its safetensors twin, the hostile
// checkpoint, and synthetic archives for views, dtypes, containers and refusals.
#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>
#include <nlohmann/json.hpp>

#include "io/mmap_file.h"
#include "io/model_files.h"
#include "io/safetensors.h"
#include "io/torch_pickle.h"
#include "io/weights.h"
#include "test_util.h"
#include "weights_testing.h"

using namespace diffuse;
using namespace diffuse::test;

namespace {

std::string floats_bytes(const std::vector<float>& v) {
  return std::string(reinterpret_cast<const char*>(v.data()), v.size() * 4);
}

// A torch-style archive "arch/" with the given pickle and storages.
std::string write_ckpt(const std::string& name, const std::string& pickle,
                       const std::vector<std::pair<std::string, std::string>>& storages,
                       const std::string& byteorder = "little") {
  std::vector<std::pair<std::string, std::string>> entries = {{"arch/data.pkl", pickle}};
  if (!byteorder.empty()) entries.push_back({"arch/byteorder", byteorder});
  for (auto& [k, v] : storages) entries.push_back({"arch/data/" + k, v});
  entries.push_back({"arch/version", "3\n"});
  std::string path = temp_dir() + "/" + name;
  write_zip(path, entries);
  return path;
}

// {"state_dict": {name: tensor, ...}} built by fn(writer) inside the inner dict's SETITEMS.
template <typename Fn>
std::string state_dict_pickle(Fn&& fn) {
  PickleWriter w;
  w.op('}').mark().str("state_dict").op('}').mark();
  fn(w);
  w.op('u').op('u');
  return w.finish();
}

}  // namespace

TEST(Ckpt, ReferenceCheckpointEqualsSafetensors) {
  DF_REQUIRE_REF(ckpt, "sd1-tiny/sd1-tiny.ckpt");
  DF_REQUIRE_REF(sf, "sd1-tiny/sd1-tiny.safetensors");
  io::TensorMap a = io::load_torch_checkpoint(ckpt);
  io::TensorMap b = io::load_safetensors(sf);
  ASSERT_EQ(a.size(), b.size());
  for (auto& [name, t] : b) {
    auto it = a.find(name);
    ASSERT_NE(it, a.end()) << name << " missing from the checkpoint";
    const Tensor& c = it->second;
    ASSERT_EQ(c.shape(), t.shape()) << name;
    EXPECT_EQ(c.to_float_vector(), t.to_float_vector()) << name;
  }
  // the dispatcher gives the same result
  io::TensorMap d = io::load_weights(ckpt);
  ASSERT_EQ(d.size(), a.size());
  EXPECT_EQ(d.begin()->second.to_float_vector(), a.begin()->second.to_float_vector());
}

// SDXL single files come as .ckpt too: the same tensors in a torch archive open as the
// safetensors file does (the same maps), for every sdxl / sdxl-refiner reference model.
TEST(Ckpt, SdxlCheckpointOpensAsItsSafetensorsTwin) {
  namespace fs = std::filesystem;
  const std::string root = reference_dir();
  if (root.empty() || !fs::is_directory(root)) GTEST_SKIP() << "no reference dir";
  int checked = 0;
  for (const auto& e : fs::directory_iterator(root)) {
    const fs::path ref = e.path() / "reference.json";
    const fs::path sf = e.path() / (e.path().filename().string() + ".safetensors");
    if (!fs::is_regular_file(ref) || !fs::is_regular_file(sf)) continue;
    const auto j = nlohmann::json::parse(io::read_text_file(ref.string()), nullptr, false);
    const std::string kind = j.is_object() ? j.value("kind", "") : "";
    if (kind != "sdxl" && kind != "sdxl-refiner") continue;
    SCOPED_TRACE(sf.string());
    const io::TensorMap tensors = io::load_safetensors(sf.string());
    std::vector<std::pair<std::string, std::string>> storages;
    const std::string pickle = state_dict_pickle([&](PickleWriter& w) {
      for (const auto& [name, t] : tensors) {
        const std::string key = std::to_string(storages.size());
        const char* storage = t.dtype() == DType::F16   ? "HalfStorage"
                              : t.dtype() == DType::I64 ? "LongStorage"
                                                        : "FloatStorage";
        ASSERT_TRUE(t.dtype() == DType::F16 || t.dtype() == DType::I64 || t.dtype() == DType::F32)
            << name << " " << t.desc();
        const Tensor c = t.contiguous();
        storages.push_back({key, std::string(static_cast<const char*>(c.raw_data()), c.nbytes())});
        w.str(name).tensor(storage, key, c.numel(), 0, c.shape(), contiguous_strides(c.shape()));
      }
    });
    const std::string ckpt = write_ckpt(e.path().filename().string() + ".ckpt", pickle, storages);
    const io::ModelFiles a = io::open_model(ckpt), b = io::open_model(sf.string());
    EXPECT_EQ(a.text_layout, io::TextEncoderLayout::Conditioner);
    for (const auto& [got, want] : {std::pair{&a.unet, &b.unet},
                                    {&a.vae, &b.vae},
                                    {&a.text_encoder, &b.text_encoder},
                                    {&a.text_encoder_2, &b.text_encoder_2}}) {
      ASSERT_EQ(got->size(), want->size());
      for (const auto& [name, t] : *want) {
        ASSERT_TRUE(got->count(name)) << name;
        EXPECT_EQ(got->at(name).to_float_vector(), t.to_float_vector()) << name;
      }
    }
    EXPECT_FALSE(a.text_encoder_2.empty());
    ++checked;
  }
  if (checked == 0) GTEST_SKIP() << "no SDXL single files in the reference dir";
}

TEST(Ckpt, HostileCheckpointIsRefusedAndNothingRuns) {
  DF_REQUIRE_REF(hostile, "sd1-tiny/hostile.ckpt");
  const std::string marker = "/tmp/pwned_by_ckpt";
  std::filesystem::remove(marker);
  for (int via_dispatch = 0; via_dispatch < 2; ++via_dispatch) {
    std::string msg = error_of([&] {
      if (via_dispatch)
        io::load_weights(hostile);
      else
        io::load_torch_checkpoint(hostile);
    });
    EXPECT_NE(msg.find("refusing to load"), std::string::npos) << msg;
    EXPECT_NE(msg.find(hostile), std::string::npos) << msg;
    EXPECT_NE(msg.find("system"), std::string::npos) << msg;
  }
  EXPECT_FALSE(std::filesystem::exists(marker));
}

TEST(Ckpt, CodeRunningGlobalsAreRefusedInEveryForm) {
  struct Case {
    const char* what;
    std::string pickle;
  };
  std::vector<Case> cases;
  auto reduce_call = [](const std::string& mod, const std::string& name) {
    PickleWriter w;
    w.op('}').mark().str("x").global(mod, name).str("echo hi").op(0x85).op('R').op('u');
    return w.finish();
  };
  cases.push_back({"os.system", reduce_call("os", "system")});
  cases.push_back({"nt.system", reduce_call("nt", "system")});
  cases.push_back({"subprocess.Popen", reduce_call("subprocess", "Popen")});
  cases.push_back({"builtins.eval", reduce_call("builtins", "eval")});
  cases.push_back({"__builtin__.getattr", reduce_call("__builtin__", "getattr")});
  cases.push_back({"builtins.__import__", reduce_call("builtins", "__import__")});
  cases.push_back({"shutil.rmtree", reduce_call("shutil", "rmtree")});
  cases.push_back({"importlib.import_module", reduce_call("importlib", "import_module")});
  cases.push_back({"socket.socket", reduce_call("socket", "socket")});
  cases.push_back({"sys.exit", reduce_call("sys", "exit")});
  cases.push_back({"some.module.eval", reduce_call("some.module", "eval")});
  {
    PickleWriter w;  // STACK_GLOBAL, the protocol 4 form
    w.op('}').mark().str("x").str("os").str("system").op(0x93).str("id").op(0x85).op('R');
    cases.push_back({"os.system", w.op('u').finish()});
  }
  {
    PickleWriter w;  // INST, the protocol 0 form
    w.op('}').mark().str("x").mark().str("id").raw("iposix\nsystem\n").op('u');
    cases.push_back({"posix.system", w.finish()});
  }
  {
    PickleWriter w;  // a dangerous global that is only referenced, never called
    w.op('}').mark().str("x").global("os", "system").op('u');
    cases.push_back({"os.system", w.finish()});
  }
  for (auto& c : cases) {
    std::string path = write_ckpt("refuse.ckpt", c.pickle, {});
    std::string msg = error_of([&] { io::load_torch_checkpoint(path); });
    EXPECT_NE(msg.find("refusing to load " + path), std::string::npos) << c.what << ": " << msg;
    EXPECT_NE(msg.find(c.what), std::string::npos) << c.what << ": " << msg;
  }
}

TEST(Ckpt, UnknownClassesAreInertAndSkipped) {
  std::vector<float> vals = {1, 2, 3, 4};
  PickleWriter w;
  w.op('}').mark();
  // an unknown class instantiated with NEWOBJ, then given state with BUILD
  w.str("callbacks").global("pytorch_lightning.callbacks", "ModelCheckpoint").op(')').op(0x81);
  w.op('}').mark().str("monitor").str("val/loss").op('u').op('b');
  // an unknown callable through REDUCE, holding a tensor in its arguments
  w.str("opt").global("torch.optim.adamw", "AdamW").mark();
  w.tensor("FloatStorage", "0", 4, 0, {4}, {1}).op('t').op('R');
  w.str("numbers").mark().integer(-5).integer(70000).integer(int64_t(1) << 40).op('l');
  w.str("flag").op(0x88).str("none").op('N');
  w.str("set").global("builtins", "set").op(']').op(0x85).op('R');
  w.str("state_dict").global("collections", "OrderedDict").op(')').op('R').mark();
  w.str("w").tensor("FloatStorage", "0", 4, 0, {2, 2}, {2, 1});
  w.op('u').op('u');
  std::string path = write_ckpt("inert.ckpt", w.finish(), {{"0", floats_bytes(vals)}});
  io::TensorMap m = io::load_torch_checkpoint(path);
  ASSERT_EQ(m.size(), 1u);
  EXPECT_EQ(m["w"].shape(), (Shape{2, 2}));
  EXPECT_EQ(m["w"].to_float_vector(), vals);
}

TEST(Ckpt, ViewsOffsetsSharedStoragesAndDtypes) {
  std::vector<float> f(24);
  for (int i = 0; i < 24; ++i) f[size_t(i)] = float(i) * 0.5f - 3;
  std::vector<double> dbl = {1.5, -2.25, 1e-3};
  std::vector<int16_t> shorts = {-7, 300};
  std::vector<int64_t> longs = {5, -9, 1ll << 40};
  std::string pickle = state_dict_pickle([](PickleWriter& w) {
    w.str("transposed").tensor("FloatStorage", "f", 24, 0, {3, 4}, {1, 3});  // 4x3 .t()
    w.str("offset").tensor("FloatStorage", "f", 24, 5, {2, 2}, {6, 1});
    w.str("whole").tensor("FloatStorage", "f", 24, 0, {2, 3, 4}, {12, 4, 1});
    w.str("expanded").tensor("FloatStorage", "f", 24, 7, {3, 2}, {0, 1});
    w.str("scalar").tensor("FloatStorage", "f", 24, 23, {}, {});
    w.str("size1dims").tensor("FloatStorage", "f", 24, 2, {1, 4, 1}, {99, 1, 42});
    w.str("double").tensor("DoubleStorage", "d", 3, 0, {3}, {1});
    w.str("short").tensor("ShortStorage", "s", 2, 0, {2}, {1});
    w.str("long").tensor("LongStorage", "l", 3, 1, {2}, {1});
    w.str("empty").tensor("HalfStorage", "h", 0, 0, {0, 4}, {4, 1});
  });
  auto raw = [](const auto& v) {
    return std::string(reinterpret_cast<const char*>(v.data()), v.size() * sizeof(v[0]));
  };
  std::string path = write_ckpt(
      "views.ckpt", pickle,
      {{"f", raw(f)}, {"d", raw(dbl)}, {"s", raw(shorts)}, {"l", raw(longs)}, {"h", ""}});
  io::TensorMap m = io::load_torch_checkpoint(path);
  std::filesystem::remove(path);  // the tensors own their data
  ASSERT_EQ(m.size(), 10u);
  std::vector<float> tr;
  for (int r = 0; r < 3; ++r)
    for (int c = 0; c < 4; ++c) tr.push_back(f[size_t(c * 3 + r)]);
  EXPECT_EQ(m["transposed"].to_float_vector(), tr);
  EXPECT_EQ(m["offset"].to_float_vector(), (std::vector<float>{f[5], f[6], f[11], f[12]}));
  EXPECT_EQ(m["whole"].to_float_vector(), f);
  EXPECT_EQ(m["expanded"].to_float_vector(),
            (std::vector<float>{f[7], f[8], f[7], f[8], f[7], f[8]}));
  EXPECT_EQ(m["scalar"].shape(), Shape{});
  EXPECT_EQ(m["scalar"].item(), f[23]);
  EXPECT_EQ(m["size1dims"].to_float_vector(), (std::vector<float>{f[2], f[3], f[4], f[5]}));
  EXPECT_EQ(m["double"].dtype(), DType::F32);
  EXPECT_EQ(m["double"].to_float_vector(), (std::vector<float>{1.5f, -2.25f, 1e-3f}));
  EXPECT_EQ(m["short"].dtype(), DType::I32);
  EXPECT_EQ(m["short"].data<int32_t>()[0], -7);
  EXPECT_EQ(m["short"].data<int32_t>()[1], 300);
  EXPECT_EQ(m["long"].dtype(), DType::I64);
  EXPECT_EQ(m["long"].data<int64_t>()[0], -9);
  EXPECT_EQ(m["long"].data<int64_t>()[1], 1ll << 40);
  EXPECT_EQ(m["empty"].shape(), (Shape{0, 4}));
  EXPECT_EQ(m["empty"].dtype(), DType::F16);
}

TEST(Ckpt, TopLevelStateDictWithoutWrapper) {
  // torch.save(model.state_dict()): an OrderedDict of tensors at the top, memoized names
  std::vector<float> v = {0.25f, -1};
  PickleWriter w;
  w.global("collections", "OrderedDict").op(')').op('R').op('q').byte(0).mark();
  w.str("a").op('q').byte(1).tensor("FloatStorage", "0", 2, 0, {2}, {1});
  w.str("b").tensor("FloatStorage", "0", 2, 1, {1}, {1});
  w.op('u');
  std::string path = write_ckpt("top.ckpt", w.finish(), {{"0", floats_bytes(v)}}, "");
  io::TensorMap m = io::load_weights(path);
  ASSERT_EQ(m.size(), 2u);
  EXPECT_EQ(m["a"].to_float_vector(), v);
  EXPECT_EQ(m["b"].to_float_vector(), std::vector<float>{-1});
}

TEST(Ckpt, ClearErrorsForMissingTensorsAndStorages) {
  {
    PickleWriter w;
    w.op('}').mark().str("epoch").integer(3).str("optimizer").op('}').op('u');
    std::string path = write_ckpt("none.ckpt", w.finish(), {});
    std::string msg = error_of([&] { io::load_torch_checkpoint(path); });
    EXPECT_NE(msg.find("no tensors"), std::string::npos) << msg;
    EXPECT_NE(msg.find("epoch, optimizer"), std::string::npos) << msg;
  }
  std::string one = state_dict_pickle(
      [](PickleWriter& w) { w.str("w").tensor("FloatStorage", "7", 4, 0, {4}, {1}); });
  {
    std::string path = write_ckpt("nostorage.ckpt", one, {});
    std::string msg = error_of([&] { io::load_torch_checkpoint(path); });
    EXPECT_NE(msg.find("'w'"), std::string::npos) << msg;
    EXPECT_NE(msg.find("arch/data/7"), std::string::npos) << msg;
  }
  {
    std::string path = write_ckpt("short.ckpt", one, {{"7", floats_bytes({1, 2, 3})}});
    std::string msg = error_of([&] { io::load_torch_checkpoint(path); });
    EXPECT_NE(msg.find("holds 12 bytes"), std::string::npos) << msg;
  }
  {
    std::string path = write_ckpt("big.ckpt", one, {{"7", floats_bytes({1, 2, 3, 4})}}, "big");
    std::string msg = error_of([&] { io::load_torch_checkpoint(path); });
    EXPECT_NE(msg.find("little-endian"), std::string::npos) << msg;
  }
  {
    std::string view = state_dict_pickle([](PickleWriter& w) {
      w.str("w").tensor("FloatStorage", "7", 4, 1, {2, 2}, {2, 1});
    });
    std::string path = write_ckpt("past.ckpt", view, {{"7", floats_bytes({1, 2, 3, 4})}});
    std::string msg = error_of([&] { io::load_torch_checkpoint(path); });
    EXPECT_NE(msg.find("reaches past its storage"), std::string::npos) << msg;
  }
  {
    std::string path = write_ckpt("nopkl.ckpt", "", {});
    write_zip(path, {{"hello.txt", "hi"}});
    std::string msg = error_of([&] { io::load_weights(path); });
    EXPECT_NE(msg.find("without data.pkl"), std::string::npos) << msg;
  }
}

TEST(Ckpt, ParserReportsTheCorruptByte) {
  std::string p = state_dict_pickle(
      [](PickleWriter& w) { w.str("w").tensor("FloatStorage", "0", 4, 0, {4}, {1}); });
  auto ok = io::parse_torch_pickle(p, "x.ckpt");
  ASSERT_EQ(ok.size(), 1u);
  EXPECT_EQ(ok[0].first, "w");
  EXPECT_EQ(ok[0].second.storage_key, "0");
  EXPECT_EQ(ok[0].second.shape, (Shape{4}));
  std::string bad = p;
  bad[3] = char(0xff);  // an opcode no protocol defines
  std::string msg = error_of([&] { io::parse_torch_pickle(bad, "x.ckpt"); });
  EXPECT_NE(msg.find("x.ckpt: corrupt checkpoint: data.pkl at byte 3"), std::string::npos) << msg;
  msg = error_of([&] { io::parse_torch_pickle(p.substr(0, p.size() - 1), "x.ckpt"); });
  EXPECT_NE(msg.find("no STOP"), std::string::npos) << msg;
}
