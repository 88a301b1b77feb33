// End-to-end tests of `diffuse serve`'s HTTP layer: a Server on an ephemeral loopback port,
// driven by httplib::Client, generating with the tiny reference models. Covers every endpoint,
// the robustness cases (bad input answered 4xx with a JSON error, the server still serving),
// API keys, loopback binding, cancellation, queue order and a bounded load test.
#include <httplib.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <random>
#include <thread>

#include "apps/server/base64.h"
#include "apps/server/server.h"
#include "io/image.h"
#include "models/lora/lora_file.h"
#include "models/lora/lora_names.h"
#include "pipeline/model_bundle.h"
#include "test_util.h"
#include "tests/server/server_fixture.h"

namespace diffuse::server {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;
using namespace test_fixture;

std::string png_text(const std::string& png) {
  static int counter = 0;
  const std::string path =
      (fs::path(test::temp_dir()) / ("t" + std::to_string(counter++) + ".png")).string();
  std::ofstream(path, std::ios::binary) << png;
  return io::read_png_text(path)["parameters"];
}

TEST_F(ServerTest, HealthPageAndLists) {
  auto [st, health] = get("/health");
  ASSERT_EQ(st, 200);
  EXPECT_EQ(health["status"], "ok");

  auto page = client()->Get("/");
  ASSERT_TRUE(page);
  EXPECT_EQ(page->status, 200);
  EXPECT_NE(page->get_header_value("Content-Type").find("text/html"), std::string::npos);
  for (const char* id :
       {"id=\"prompt\"", "id=\"generate\"", "id=\"cancel\"", "id=\"gallery\"", "app.js"})
    EXPECT_NE(page->body.find(id), std::string::npos) << id;
  for (const char* asset : {"/app.js", "/style.css"}) {
    auto r = client()->Get(asset);
    ASSERT_TRUE(r);
    EXPECT_EQ(r->status, 200) << asset;
    EXPECT_GT(r->body.size(), 100u) << asset;
  }

  auto [sm, models] = get("/sdapi/v1/sd-models");
  ASSERT_EQ(sm, 200);
  ASSERT_EQ(models.size(), models_.size());
  for (size_t i = 0; i < models_.size(); ++i) EXPECT_EQ(models[i]["title"], models_[i]);
  auto [so, openai_models] = get("/v1/models");
  ASSERT_EQ(so, 200);
  EXPECT_EQ(openai_models["data"].size(), models_.size());

  auto [ss, samplers] = get("/sdapi/v1/samplers");
  ASSERT_EQ(ss, 200);
  std::vector<std::string> names;
  for (auto& s : samplers) names.push_back(s["name"]);
  for (const char* want : {"Euler", "Euler a", "DPM++ 2M", "DDIM", "UniPC", "Heun", "LMS"})
    EXPECT_NE(std::find(names.begin(), names.end(), want), names.end()) << want;
  auto [sc, schedulers] = get("/sdapi/v1/schedulers");
  ASSERT_EQ(sc, 200);
  ASSERT_GE(schedulers.size(), 3u);
  EXPECT_EQ(schedulers[0]["name"], "automatic");
  EXPECT_EQ(schedulers[1]["name"], "karras");
}

TEST_F(ServerTest, Options) {
  auto [st, opt] = get("/sdapi/v1/options");
  ASSERT_EQ(st, 200);
  EXPECT_EQ(opt["sd_model_checkpoint"], models_.front());
  EXPECT_EQ(opt["CLIP_stop_at_last_layers"], 1);
  const std::string other = models_.back();
  auto [sp, set] = post("/sdapi/v1/options",
                        json{{"sd_model_checkpoint", other}, {"CLIP_stop_at_last_layers", 2}});
  ASSERT_EQ(sp, 200) << set.dump();
  auto [st2, opt2] = get("/sdapi/v1/options");
  EXPECT_EQ(opt2["sd_model_checkpoint"], other);
  EXPECT_EQ(opt2["CLIP_stop_at_last_layers"], 2);
  // A generation without a model uses the new default, with clip skip 2.
  auto [sg, res] = post("/sdapi/v1/txt2img", small({{"prompt", "a cat"}, {"seed", 1}}));
  ASSERT_EQ(sg, 200) << res.dump();
  json info = json::parse(res["info"].get<std::string>());
  EXPECT_EQ(info["sd_model_checkpoint"], other);
  EXPECT_EQ(info["clip_skip"], 2);
  EXPECT_NE(info["infotexts"][0].get<std::string>().find("Clip skip: 2"), std::string::npos);

  auto [bad, err] = post("/sdapi/v1/options", json{{"sd_model_checkpoint", "../" + other}});
  EXPECT_EQ(bad, 400) << err.dump();
  auto [unk, err2] = post("/sdapi/v1/options", json{{"sd_model_checkpoint", "no-such-model"}});
  EXPECT_EQ(unk, 404) << err2.dump();
  auto [st3, opt3] = get("/sdapi/v1/options");
  EXPECT_EQ(opt3["sd_model_checkpoint"], other);
}

// txt2img: images, seeds in info, the PNG parameters, and the same image and text as the CLI.
TEST_F(ServerTest, Txt2ImgMatchesTheCli) {
  const std::string model = models_.front();
  json req = {{"prompt", "a red fox in the snow"},
              {"negative_prompt", "blurry"},
              {"seed", 42},
              {"sampler_name", "Euler"},
              {"steps", 3},
              {"cfg_scale", 6.5},
              {"width", 64},
              {"height", 128},
              {"batch_size", 2},
              {"n_iter", 2},
              {"model", model}};
  auto [st, res] = post("/sdapi/v1/txt2img", req);
  ASSERT_EQ(st, 200) << res.dump();
  ASSERT_EQ(res["images"].size(), 4u);
  json info = json::parse(res["info"].get<std::string>());
  EXPECT_EQ(info["all_seeds"], json({42, 43, 44, 45}));
  EXPECT_EQ(info["seed"], 42);
  EXPECT_EQ(res["parameters"]["prompt"], "a red fox in the snow");
  EXPECT_EQ(res["parameters"]["steps"], 3);
  std::vector<std::string> pngs;
  for (size_t i = 0; i < 4; ++i) {
    pngs.push_back(base64_decode(res["images"][i].get<std::string>()));
    io::Image img = io::decode_image(pngs.back(), 0);
    EXPECT_EQ(img.width, 64);
    EXPECT_EQ(img.height, 128);
    const std::string text = png_text(pngs.back());
    EXPECT_EQ(text, info["infotexts"][i].get<std::string>());
    EXPECT_NE(text.find("Seed: " + std::to_string(42 + i)), std::string::npos) << text;
  }
  EXPECT_NE(pngs[0], pngs[1]);

  // The CLI with the same request writes the same pixels and parameters.
  const std::string out = (fs::path(test::temp_dir()) / "cli.png").string();
  const std::string cmd =
      test::cli_path() + " generate -q -t 1 --precision fp32 -m " +
      (fs::path(model_dir()) / model).string() +
      " -p 'a red fox in the snow' -n blurry -s 43 --sampler euler --steps 3 --cfg-scale 6.5"
      " -W 64 -H 128 -o " +
      out + " 2>&1";
  std::string log;
  ASSERT_EQ(test::run_command(cmd, &log), 0) << log;
  io::Image cli = io::load_image(out);
  io::Image srv = io::decode_image(pngs[1]);
  EXPECT_EQ(cli.pixels, srv.pixels);
  EXPECT_EQ(io::read_png_text(out)["parameters"], png_text(pngs[1]));
}

TEST_F(ServerTest, Img2ImgAndInpaint) {
  auto [st, base] =
      post("/sdapi/v1/txt2img",
           small({{"prompt", "a house"}, {"seed", 7}, {"width", 128}, {"height", 128}}));
  ASSERT_EQ(st, 200) << base.dump();
  const std::string init = base["images"][0];
  // No size given: the init image's; denoising strength in the parameters.
  auto [s1, r1] = post("/sdapi/v1/img2img", json{{"prompt", "a castle"},
                                                 {"init_images", {init}},
                                                 {"steps", 4},
                                                 {"denoising_strength", 0.5},
                                                 {"seed", 3}});
  ASSERT_EQ(s1, 200) << r1.dump();
  const std::string png1 = base64_decode(r1["images"][0].get<std::string>());
  io::Image img1 = io::decode_image(png1);
  EXPECT_EQ(img1.width, 128);
  EXPECT_EQ(img1.height, 128);
  EXPECT_NE(png_text(png1).find("Denoising strength: 0.5"), std::string::npos);
  EXPECT_FALSE(r1["parameters"].contains("init_images"));
  // Another size resizes the init image; a mask (white = repaint, left half) as a data URL.
  io::Image mask;
  mask.width = 64;
  mask.height = 64;
  mask.channels = 1;
  mask.pixels.assign(64 * 64, 0);
  for (int y = 0; y < 64; ++y)
    for (int x = 0; x < 32; ++x) mask.pixels[size_t(y * 64 + x)] = 255;
  const std::string mask64 = "data:image/png;base64," + base64_encode(io::encode_png(mask));
  auto [s2, r2] = post("/sdapi/v1/img2img", json{{"prompt", "a castle"},
                                                 {"init_images", {init}},
                                                 {"mask", mask64},
                                                 {"width", 64},
                                                 {"height", 64},
                                                 {"steps", 4},
                                                 {"seed", 3}});
  ASSERT_EQ(s2, 200) << r2.dump();
  io::Image img2 = io::decode_image(base64_decode(r2["images"][0].get<std::string>()));
  EXPECT_EQ(img2.width, 64);
  // The masked-out right half keeps more of the init image than the repainted left half.
  io::Image small_init = io::decode_image(base64_decode(init), 3);
  double left = 0, right = 0;
  for (int y = 0; y < 64; ++y)
    for (int x = 0; x < 64; ++x)
      for (int c = 0; c < 3; ++c) {
        const double d =
            std::abs(double(img2.pixels[size_t((y * 64 + x) * 3 + c)]) -
                     double(small_init.pixels[size_t(((y * 2) * 128 + x * 2) * 3 + c)]));
        (x < 32 ? left : right) += d;
      }
  EXPECT_LT(right, left);
}

TEST_F(ServerTest, OpenAiImages) {
  auto [st, res] = post("/v1/images/generations", json{{"prompt", "a lighthouse"},
                                                       {"n", 2},
                                                       {"size", "64x64"},
                                                       {"response_format", "b64_json"},
                                                       {"steps", 2},
                                                       {"seed", 11}});
  ASSERT_EQ(st, 200) << res.dump();
  ASSERT_EQ(res["data"].size(), 2u);
  EXPECT_GT(res["created"].get<int64_t>(), 0);
  for (size_t i = 0; i < 2; ++i) {
    const std::string png = base64_decode(res["data"][i]["b64_json"].get<std::string>());
    EXPECT_EQ(io::decode_image(png).width, 64);
    EXPECT_EQ(res["data"][i]["seed"], 11 + int(i));
    EXPECT_NE(png_text(png).find("a lighthouse"), std::string::npos);
  }
  auto [s2, e2] = post("/v1/images/generations",
                       json{{"prompt", "x"}, {"response_format", "url"}, {"size", "64x64"}});
  EXPECT_EQ(s2, 422);
  EXPECT_NE(e2["error"].get<std::string>().find("response_format"), std::string::npos);
  auto [s3, e3] = post("/v1/images/generations", json{{"prompt", "x"}, {"size", "big"}});
  EXPECT_EQ(s3, 422);
  auto [s4, e4] = post("/v1/images/generations", json{{"size", "64x64"}});
  EXPECT_EQ(s4, 422);
  EXPECT_NE(e4["error"].get<std::string>().find("prompt"), std::string::npos);
}

// Progress while a long job runs, then A1111's interrupt; a synchronous request that is
// interrupted answers 409.
TEST_F(ServerTest, ProgressAndInterrupt) {
  auto [s0, idle] = get("/sdapi/v1/progress");
  ASSERT_EQ(s0, 200);
  EXPECT_EQ(idle["progress"], 0.0);
  EXPECT_EQ(idle["state"]["job_count"], 0);

  auto [s1, job] = post(
      "/api/jobs",
      small({{"prompt", "slow"}, {"steps", 150}, {"n_iter", 7}, {"width", 128}, {"height", 128}}));
  ASSERT_EQ(s1, 202) << job.dump();
  const std::string id = job["id"];
  json p;
  for (int i = 0; i < 3000; ++i) {
    p = get("/sdapi/v1/progress").second;
    if (p["progress"].get<double>() > 0) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  ASSERT_GT(p["progress"].get<double>(), 0.0) << p.dump();
  EXPECT_LT(p["progress"].get<double>(), 1.0);
  EXPECT_GT(p["eta_relative"].get<double>(), 0.0);
  EXPECT_EQ(p["state"]["job"], id);
  EXPECT_EQ(p["state"]["sampling_steps"], 150 * 7);
  auto [si, ir] = post("/sdapi/v1/interrupt", std::string("{}"));
  ASSERT_EQ(si, 200);
  EXPECT_EQ(ir["interrupted"], true);
  json done = wait_job(id);
  EXPECT_EQ(done["state"], "cancelled") << done.dump();
  EXPECT_FALSE(done.contains("images"));

  // A blocking txt2img, interrupted from another connection.
  std::thread killer([&] {
    for (int i = 0; i < 3000; ++i) {
      if (get("/sdapi/v1/progress").second["progress"].get<double>() > 0) break;
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    post("/sdapi/v1/interrupt", std::string("{}"));
  });
  auto [s2, r2] = post(
      "/sdapi/v1/txt2img",
      small({{"prompt", "slow"}, {"steps", 150}, {"n_iter", 7}, {"width", 128}, {"height", 128}}));
  killer.join();
  EXPECT_EQ(s2, 409) << r2.dump();
  EXPECT_EQ(r2["error"], "cancelled");
  EXPECT_EQ(get("/health").first, 200);
}

// Jobs run one at a time in the order they came; a queued job can be cancelled at once.
TEST_F(ServerTest, QueueOrderAndCancel) {
  std::vector<std::string> ids;
  for (int i = 0; i < 3; ++i) {
    auto [st, j] = post(
        "/api/jobs",
        small({{"prompt", "job " + std::to_string(i)}, {"steps", i == 0 ? 150 : 2}, {"seed", i}}));
    ASSERT_EQ(st, 202) << j.dump();
    ids.push_back(j["id"]);
  }
  auto [sl, list] = get("/api/jobs");
  ASSERT_EQ(sl, 200);
  auto [s2, j2] = get("/api/jobs/" + ids[2]);
  ASSERT_EQ(s2, 200);
  if (j2["state"] == "queued") {
    EXPECT_GE(j2["queue_position"].get<int>(), 0);
  }
  auto [sc, cancelled] = post("/api/jobs/" + ids[2] + "/cancel", std::string());
  ASSERT_EQ(sc, 200) << cancelled.dump();
  json r0 = wait_job(ids[0]), r1 = wait_job(ids[1]), r2 = wait_job(ids[2]);
  EXPECT_EQ(r0["state"], "done");
  EXPECT_EQ(r1["state"], "done");
  EXPECT_EQ(r2["state"], "cancelled");
  EXPECT_LE(r0["finished"].get<double>(), r1["started"].get<double>());
  ASSERT_EQ(r1["images"].size(), 1u);
  EXPECT_EQ(r1["images"][0]["seed"], 1);
  auto png = client()->Get(("/api/jobs/" + ids[1] + "/images/0.png").c_str());
  ASSERT_TRUE(png);
  EXPECT_EQ(png->status, 200);
  EXPECT_EQ(png->body, base64_decode(r1["images"][0]["image"].get<std::string>()));
  EXPECT_EQ(get("/api/jobs/" + ids[1] + "/images/5.png").first, 404);
  auto del = client()->Delete(("/api/jobs/" + ids[0]).c_str());
  ASSERT_TRUE(del);
  EXPECT_EQ(del->status, 200);  // finished: nothing changes
  EXPECT_EQ(wait_job(ids[0])["state"], "done");
}

// One model resident at a time, switched on demand.
TEST_F(ServerTest, ModelsLoadOnDemand) {
  if (models_.size() < 2) GTEST_SKIP() << "needs two tiny models";
  for (const auto& m : {models_[1], models_[0], models_[1]}) {
    auto [st, res] = post("/sdapi/v1/txt2img", small({{"prompt", "x"}, {"model", m}}));
    ASSERT_EQ(st, 200) << res.dump();
    EXPECT_EQ(json::parse(res["info"].get<std::string>())["sd_model_checkpoint"], m);
    EXPECT_EQ(get("/api/stats").second["resident_model"], m);
  }
  // override_settings names the model as A1111 clients do.
  auto [st, res] =
      post("/sdapi/v1/txt2img",
           small({{"prompt", "x"}, {"override_settings", {{"sd_model_checkpoint", models_[0]}}}}));
  ASSERT_EQ(st, 200) << res.dump();
  EXPECT_EQ(get("/api/stats").second["resident_model"], models_[0]);
}

struct BadCase {
  const char* path;
  std::string body;
  int status;
  const char* mentions;  // in error or detail
};

// A field nested 80k deep (160 KB) used to overflow the stack when the request was copied
// and echoed back; it is refused before parsing, on every endpoint that takes JSON.
TEST_F(ServerTest, DeeplyNestedBodiesAreRefused) {
  const std::string deep = std::string(80000, '[') + std::string(80000, ']');
  const std::string body =
      R"({"prompt": "x", "width": 64, "height": 64, "steps": 1, "junk": )" + deep + "}";
  for (const char* path : {"/sdapi/v1/txt2img", "/sdapi/v1/img2img", "/v1/images/generations",
                           "/api/jobs", "/sdapi/v1/options"}) {
    auto [st, j] = post(path, body);
    EXPECT_EQ(st, 400) << path;
    EXPECT_NE(j.value("detail", "").find("nested deeper than"), std::string::npos) << j.dump();
  }
  // Deep nesting inside a string is only text.
  auto [st, j] = post("/sdapi/v1/txt2img", small({{"prompt", std::string(2000, '{')}}));
  EXPECT_EQ(st, 200) << j.dump().substr(0, 300);
  EXPECT_EQ(get("/health").first, 200);
}

TEST_F(ServerTest, BadInputGetsJsonErrors) {
  const std::string m = models_.front();
  const std::vector<BadCase> cases = {
      {"/sdapi/v1/txt2img", "{\"prompt\": ", 400, "JSON"},
      {"/sdapi/v1/txt2img", "", 400, "JSON"},
      {"/sdapi/v1/txt2img", "[1, 2]", 422, "object"},
      {"/sdapi/v1/txt2img", "{\"prompt\": \"\xff\xfe\"}", 400, "JSON"},
      {"/sdapi/v1/txt2img", R"({"prompt": 5})", 422, "prompt"},
      {"/sdapi/v1/txt2img", R"({"steps": "20"})", 422, "steps"},
      {"/sdapi/v1/txt2img", R"({"steps": 2.5})", 422, "steps"},
      {"/sdapi/v1/txt2img", R"({"width": 100, "height": 64})", 422, "multiple of 8"},
      {"/sdapi/v1/txt2img", R"({"width": 64, "height": -64})", 422, "height"},
      {"/sdapi/v1/txt2img", R"({"width": 512, "height": 64})", 422, "max-size"},
      {"/sdapi/v1/txt2img", R"({"width": 64, "height": 64, "steps": 0})", 422, "steps"},
      {"/sdapi/v1/txt2img", R"({"width": 64, "height": 64, "steps": 100000})", 422, "steps"},
      {"/sdapi/v1/txt2img", R"({"width": 64, "height": 64, "batch_size": 0})", 422, "batch_size"},
      {"/sdapi/v1/txt2img", R"({"width": 64, "height": 64, "cfg_scale": "high"})", 422,
       "cfg_scale"},
      {"/sdapi/v1/txt2img", R"({"width": 64, "height": 64, "sampler_name": "Nope"})", 422,
       "sampler"},
      {"/sdapi/v1/txt2img", R"({"width": 64, "height": 64, "scheduler": "exponential"})", 422,
       "scheduler"},
      {"/sdapi/v1/txt2img", R"({"width": 64, "height": 64, "model": "no-such-model"})", 404,
       "no-such-model"},
      {"/sdapi/v1/txt2img", R"({"width": 64, "height": 64, "model": "../)" + m + "\"}", 400,
       "model name"},
      {"/sdapi/v1/txt2img", R"({"width": 64, "height": 64, "model": "/etc/passwd"})", 400,
       "model name"},
      {"/sdapi/v1/txt2img", R"({"width": 64, "height": 64, "model": ".."})", 400, "model name"},
      {"/sdapi/v1/txt2img", R"({"width": 64, "height": 64, "model": "a\\b"})", 400, "model name"},
      {"/sdapi/v1/txt2img",
       R"({"width": 64, "height": 64, "override_settings": {"sd_model_checkpoint": "../../x"}})",
       400, "model name"},
      {"/sdapi/v1/txt2img", R"({"width": 64, "height": 64, "override_settings": 3})", 422,
       "override_settings"},
      {"/sdapi/v1/txt2img", R"({"width": 64, "height": 64, "seed": "abc"})", 422, "seed"},
      {"/sdapi/v1/txt2img", R"({"width": 64, "height": 64, "init_images": ["x"]})", 422, "img2img"},
      // A multiple of 8 that this model cannot take: found by the worker, still a 422.
      {"/sdapi/v1/txt2img", R"({"width": 72, "height": 64, "steps": 1})", 422, "multiple of"},
      {"/sdapi/v1/img2img", R"({"prompt": "x"})", 422, "init_images"},
      {"/sdapi/v1/img2img", R"({"init_images": ["%%%"]})", 422, "base64"},
      {"/sdapi/v1/img2img", R"({"init_images": ["aGVsbG8gd29ybGQ="]})", 422, "not an image"},
      {"/sdapi/v1/img2img", R"({"init_images": [5]})", 422, "init_images"},
      {"/v1/images/generations", R"({"prompt": "x", "n": 50})", 422, "n"},
      {"/v1/images/generations", R"({"prompt": "x", "size": "64x64", "model": "../../etc"})", 400,
       "model name"},
      {"/api/jobs", R"({"width": 12})", 422, "width"},
      {"/sdapi/v1/options", R"({"CLIP_stop_at_last_layers": "two"})", 422,
       "CLIP_stop_at_last_layers"},
      {"/sdapi/v1/options", "nope", 400, "JSON"},
      {"/sdapi/v1/txt2img", R"({"width": 64, "height": 64, "send_images": "yes"})", 422,
       "send_images"},
      {"/sdapi/v1/txt2img", std::string(200000, '[') + std::string(200000, ']'), 400, "nested"},
      {"/sdapi/v1/txt2img", "[" + std::string(64, '[') + std::string(64, ']') + "]", 400,
       "nested deeper than 64"},
      {"/sdapi/v1/txt2img", std::string(64, '[') + std::string(64, ']'), 422, "object"},
      {"/sdapi/v1/txt2img", std::string(200000, '['), 400, "JSON"},
      {"/sdapi/v1/nothing-here", "{}", 404, "not an endpoint"},
  };
  for (const auto& c : cases) {
    auto r = client()->Post(c.path, c.body, "application/json");
    ASSERT_TRUE(r) << c.path << " " << c.body << ": no answer";
    EXPECT_EQ(r->status, c.status) << c.path << " " << c.body.substr(0, 200) << " -> " << r->body;
    json j = json::parse(r->body, nullptr, false);
    ASSERT_TRUE(j.is_object() && j.contains("error") && j["error"].is_string() &&
                j["detail"].is_string())
        << c.path << " " << c.body.substr(0, 200) << " -> " << r->body;
    const std::string text = j["error"].get<std::string>() + " " + j["detail"].get<std::string>();
    EXPECT_NE(text.find(c.mentions), std::string::npos) << c.body.substr(0, 200) << " -> " << text;
  }
  EXPECT_EQ(get("/api/jobs/0123456789abcdef").first, 404);
  EXPECT_EQ(post("/api/jobs/0123456789abcdef/cancel", std::string()).first, 404);
  EXPECT_EQ(get("/nothing").first, 404);
  // Still serving, and still generating.
  EXPECT_EQ(get("/health").first, 200);
  auto [st, res] = post("/sdapi/v1/txt2img", small({{"prompt", "still here"}}));
  EXPECT_EQ(st, 200) << res.dump();
}

class KeyedServerTest : public ServerTest {
  void customize(ServerOptions& o) override { o.api_key = "s3cret-key"; }
};

TEST_F(KeyedServerTest, RequestsWithoutTheKeyGet401) {
  for (const char* path : {"/sdapi/v1/sd-models", "/sdapi/v1/progress", "/sdapi/v1/loras",
                           "/sdapi/v1/options", "/api/jobs", "/api/stats", "/v1/models"}) {
    auto r = client()->Get(path);
    ASSERT_TRUE(r);
    EXPECT_EQ(r->status, 401) << path;
    EXPECT_EQ(json::parse(r->body, nullptr, false)["error"], "unauthorized") << path;
  }
  auto c = client();
  auto r = c->Post("/sdapi/v1/txt2img", small({{"prompt", "x"}}).dump(), "application/json");
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 401);
  EXPECT_EQ(c->Get("/api/stats")->status, 401);
  c->set_bearer_token_auth("wrong-key");
  EXPECT_EQ(c->Get("/sdapi/v1/sd-models")->status, 401);
  c->set_bearer_token_auth("s3cret-key");
  EXPECT_EQ(c->Get("/sdapi/v1/sd-models")->status, 200);
  r = c->Post("/sdapi/v1/txt2img", small({{"prompt", "x"}}).dump(), "application/json");
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 200);
  EXPECT_EQ(client()->Get("/sdapi/v1/options", {{"X-API-Key", "s3cret-key"}})->status, 200);
  auto basic = client();
  basic->set_basic_auth("user", "s3cret-key");
  EXPECT_EQ(basic->Get("/sdapi/v1/options")->status, 200);
  for (const char* path : {"/sdapi/v1/interrupt", "/sdapi/v1/options", "/api/jobs",
                           "/sdapi/v1/refresh-checkpoints", "/v1/images/generations"})
    EXPECT_EQ(client()->Post(path, "{}", "application/json")->status, 401) << path;
  EXPECT_EQ(client()->Delete("/api/jobs/0123456789abcdef")->status, 401);
  // The health check and the page itself (which holds nothing secret and asks for the key)
  // need no key.
  EXPECT_EQ(client()->Get("/health")->status, 200);
  EXPECT_EQ(client()->Get("/")->status, 200);
  EXPECT_EQ(client()->Get("/app.js")->status, 200);
}

// A LoRA folder holding style.safetensors: rank-4 random matrices on the cross-attention keys of
// the first model's UNet.
std::string lora_dir() {
  static std::string dir = [] {
    const fs::path d = fs::path(test::temp_dir()) / "loras";
    fs::create_directories(d / "sub");
    pipeline::BundleOptions bo;
    bo.data_dir = test::data_dir();
    auto bundle = pipeline::ModelBundle::open(
        (fs::path(model_dir()) / tiny_model_names().front()).string(), bo);
    std::mt19937 gen(7);
    std::normal_distribution<float> normal;
    auto randn = [&](const Shape& shape) {
      std::vector<float> v(size_t(shape_numel(shape)));
      for (float& x : v) x = normal(gen);
      return Tensor::from_vector(v, shape);
    };
    models::LoraFile f;
    const models::LoraNames names(&bundle->unet(), nullptr);
    for (const auto& [name, layer] : names.names())
      if (name == models::kohya_lora_name("lora_unet", layer.module) &&
          layer.module.find(".attn2.to_k") != std::string::npos)
        f.modules[name] = {randn({4, layer.shape[1]}), randn({layer.shape[0], 4}), 4.f};
    models::write_lora_file((d / "sub" / "style.safetensors").string(), f);
    return d.string();
  }();
  return dir;
}

class LoraServerTest : public ServerTest {
  void customize(ServerOptions& o) override { o.lora_dir = lora_dir(); }
};

// <lora:NAME:WEIGHT> tags in a request's prompt apply NAME.safetensors from --lora-dir; the
// files are listed as A1111 lists them; a tag naming no file is answered 422, not queued.
TEST_F(LoraServerTest, PromptTagsApplyLoraFiles) {
  auto [st, list] = get("/sdapi/v1/loras");
  ASSERT_EQ(st, 200) << list.dump();
  ASSERT_EQ(list.size(), 1u) << list.dump();
  EXPECT_EQ(list[0]["name"], "style");

  auto image = [&](const std::string& prompt) {
    auto [s, res] = post("/sdapi/v1/txt2img", small({{"prompt", prompt}, {"seed", 3}}));
    EXPECT_EQ(s, 200) << res.dump();
    return s == 200 ? io::decode_image(base64_decode(res["images"][0].get<std::string>())).pixels
                    : std::vector<uint8_t>();
  };
  const auto plain = image("a cat");
  const auto styled = image("a cat <lora:style:1>");
  ASSERT_FALSE(plain.empty());
  EXPECT_NE(styled, plain);
  EXPECT_EQ(image("a cat <lora:style:0>"), plain);
  EXPECT_EQ(image("a cat <lora:style:1>"), styled);  // applied again after a plain request
  EXPECT_EQ(image("a cat"), plain);                  // and taken off again

  auto [s2, err] = post("/sdapi/v1/txt2img", small({{"prompt", "a cat <lora:absent:1>"}}));
  EXPECT_EQ(s2, 422) << err.dump();
  EXPECT_NE(err["detail"].get<std::string>().find("absent"), std::string::npos) << err.dump();
  auto [s3, err3] =
      post("/v1/images/generations", {{"prompt", "<lora:style:x>"}, {"size", "64x64"}});
  EXPECT_EQ(s3, 422) << err3.dump();
}

class TiledServerTest : public ServerTest {
  void customize(ServerOptions& o) override { o.vae_tiling = true; }
};

// serve --vae-tiling decodes images larger than the VAE's tile (the tiny VAE's: 128 px) in
// tiles: the same image as a plain server's at one tile, another one above.
TEST_F(TiledServerTest, LargeImagesDecodeInTiles) {
  ServerOptions o;
  o.model_dir = model_dir();
  o.port = 0;
  o.max_size = 256;
  o.data_dir = test::data_dir();
  o.threads = 1;
  Server plain(o);
  plain.start();
  ASSERT_GT(plain.port(), 0);
  auto image = [&](int port, int side) {
    httplib::Client c("127.0.0.1", port);
    c.set_read_timeout(120, 0);
    const json body = {
        {"prompt", "a cat"}, {"seed", 5}, {"steps", 1}, {"width", side}, {"height", side}};
    auto r = c.Post("/sdapi/v1/txt2img", body.dump(), "application/json");
    EXPECT_TRUE(r && r->status == 200);
    if (!r || r->status != 200) return std::vector<uint8_t>();
    const json j = json::parse(r->body);
    return io::decode_image(base64_decode(j["images"][0].get<std::string>())).pixels;
  };
  const auto tiled_small = image(server_->port(), 64), plain_small = image(plain.port(), 64);
  ASSERT_FALSE(tiled_small.empty());
  EXPECT_EQ(tiled_small, plain_small);
  const auto tiled_big = image(server_->port(), 256), plain_big = image(plain.port(), 256);
  ASSERT_EQ(tiled_big.size(), plain_big.size());
  EXPECT_NE(tiled_big, plain_big);
  plain.stop();
}

// Without --host the listening socket is bound to 127.0.0.1 only (read from /proc/net/tcp,
// so no traffic leaves loopback).
TEST_F(ServerTest, BindsLoopbackByDefault) {
  EXPECT_EQ(ServerOptions{}.host, "127.0.0.1");
  std::ifstream tcp("/proc/net/tcp");
  if (!tcp) GTEST_SKIP() << "no /proc/net/tcp";
  char port_hex[8];
  std::snprintf(port_hex, sizeof port_hex, "%04X", server_->port());
  std::string line, local;
  while (std::getline(tcp, line)) {
    std::istringstream is(line);
    std::string sl, loc, rem, state;
    is >> sl >> loc >> rem >> state;
    if (state == "0A" && loc.size() > 5 && loc.substr(loc.size() - 4) == port_hex) local = loc;
  }
  EXPECT_EQ(local, std::string("0100007F:") + port_hex);
}

// 20 concurrent clients, 200 generations (A1111 and OpenAI endpoints, 1-2 steps) and as many
// progress polls: every request answered, every job served with its own seed, none failed.
TEST_F(ServerTest, BoundedLoadTest) {
  constexpr int kClients = 20, kPerClient = 10;
  const auto before = server_->jobs().stats();
  std::atomic<int> ok{0}, failed{0}, polls{0}, wrong{0};
  const auto t0 = std::chrono::steady_clock::now();
  std::vector<std::thread> threads;
  for (int c = 0; c < kClients; ++c)
    threads.emplace_back([&, c] {
      auto cli = client();
      for (int i = 0; i < kPerClient; ++i) {
        const int seed = 1000 + c * kPerClient + i;
        const bool openai = i % 2 == 1;
        httplib::Result r =
            openai ? cli->Post("/v1/images/generations",
                               json{{"prompt", "load"},
                                    {"size", "64x64"},
                                    {"steps", 1 + i % 2},
                                    {"seed", seed}}
                                   .dump(),
                               "application/json")
                   : cli->Post(
                         "/sdapi/v1/txt2img",
                         small({{"prompt", "load"}, {"steps", 1 + i % 2}, {"seed", seed}}).dump(),
                         "application/json");
        if (!r || r->status != 200) {
          ++failed;
        } else {
          json j = json::parse(r->body, nullptr, false);
          const int64_t got =
              openai ? j["data"][0]["seed"].get<int64_t>()
                     : json::parse(j["info"].get<std::string>())["seed"].get<int64_t>();
          const size_t n = openai ? j["data"].size() : j["images"].size();
          if (got != seed || n != 1) ++wrong;
          ++ok;
        }
        auto p = cli->Get("/sdapi/v1/progress");
        if (p && p->status == 200)
          ++polls;
        else
          ++failed;
      }
    });
  for (auto& t : threads) t.join();
  const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  const auto after = server_->jobs().stats();
  const int64_t served = after.done - before.done, queued = after.waited - before.waited,
                job_failed = after.failed - before.failed;
  std::printf(
      "load test: %d clients, %d requests in %.1f s: %lld generations served, %lld queued behind "
      "another (queue up to %lld), %lld failed jobs, %d failed requests, %d progress polls\n",
      kClients, kClients * kPerClient * 2, secs, (long long)served, (long long)queued,
      (long long)after.max_depth, (long long)job_failed, failed.load(), polls.load());
  EXPECT_EQ(failed.load(), 0);
  EXPECT_EQ(wrong.load(), 0);
  EXPECT_EQ(ok.load(), kClients * kPerClient);
  EXPECT_EQ(polls.load(), kClients * kPerClient);
  EXPECT_EQ(served, kClients * kPerClient);
  EXPECT_EQ(job_failed, 0);
  EXPECT_EQ(after.refused - before.refused, 0);
  EXPECT_GT(queued, 0);
  EXPECT_EQ(server_->jobs().queued(), 0u);
}

}  // namespace
}  // namespace diffuse::server
