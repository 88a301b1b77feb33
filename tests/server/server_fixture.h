// The fixture of the server's end-to-end tests: a Server on an ephemeral loopback port with
// the reference's tiny diffusers models, and JSON helpers over httplib::Client.
#pragma once
#include <httplib.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <thread>
#include <vector>

#include "apps/server/server.h"
#include "test_util.h"

namespace diffuse::server::test_fixture {

namespace fs = std::filesystem;
using nlohmann::json;

// The reference's diffusers folders of ordinary (4-channel) tiny models, linked into a model
// dir under their folder names.
inline std::vector<std::string> tiny_model_names() {
  std::vector<std::string> names;
  const fs::path ref = test::reference_dir();
  for (const std::string& name : test::reference_model_folders()) {
    const fs::path d = ref / name / "diffusers";
    if (!fs::exists(d / "model_index.json")) continue;
    std::ifstream f(d / "unet" / "config.json");
    json cfg = json::parse(f, nullptr, false);
    if (cfg.is_discarded() || cfg.value("in_channels", 0) != 4) continue;
    names.push_back(name);
  }
  return names;
}

inline std::string model_dir() {
  static std::string dir = [] {
    fs::path d = fs::path(test::temp_dir()) / "models";
    fs::create_directories(d);
    for (const auto& n : tiny_model_names())
      fs::create_directory_symlink(fs::path(test::reference_dir()) / n / "diffusers", d / n);
    return d.string();
  }();
  return dir;
}

class ServerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    models_ = tiny_model_names();
    if (models_.empty()) GTEST_SKIP() << "no tiny diffusers models in " << test::reference_dir();
    ServerOptions o;
    o.model_dir = model_dir();
    o.port = 0;
    o.max_size = 256;
    o.data_dir = test::data_dir();
    o.threads = 1;  // the tiny model gains nothing from more, and ctest runs two tests at once
    customize(o);
    server_ = std::make_unique<Server>(o);
    server_->start();
    ASSERT_GT(server_->port(), 0);
  }
  void TearDown() override {
    if (server_) server_->stop();
  }
  virtual void customize(ServerOptions&) {}

  std::unique_ptr<httplib::Client> client() const {
    auto c = std::make_unique<httplib::Client>("127.0.0.1", server_->port());
    c->set_read_timeout(120, 0);
    c->set_write_timeout(30, 0);
    return c;
  }
  // POST/GET returning (status, parsed body); the body must be JSON.
  std::pair<int, json> post(const std::string& path, const std::string& body) const {
    auto r = client()->Post(path.c_str(), body, "application/json");
    if (!r) return {-1, json()};
    return {r->status, json::parse(r->body, nullptr, false)};
  }
  std::pair<int, json> post(const std::string& path, const json& body) const {
    return post(path, body.dump());
  }
  std::pair<int, json> get(const std::string& path) const {
    auto r = client()->Get(path.c_str());
    if (!r) return {-1, json()};
    return {r->status, json::parse(r->body, nullptr, false)};
  }
  json wait_job(const std::string& id) const {
    for (int i = 0; i < 6000; ++i) {
      auto [st, j] = get("/api/jobs/" + id);
      if (st != 200) return j;
      const std::string s = j["state"];
      if (s == "done" || s == "failed" || s == "cancelled") return j;
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    return json();
  }
  json small(json j) const {
    if (!j.contains("width")) j["width"] = 64;
    if (!j.contains("height")) j["height"] = 64;
    if (!j.contains("steps")) j["steps"] = 2;
    return j;
  }

  std::vector<std::string> models_;
  std::unique_ptr<Server> server_;
};

}  // namespace diffuse::server::test_fixture
