// Tests core/json.cpp: file reads with located errors, typed field access, atomic writes.
#include <doctest/doctest.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <string>

#include "core/json.h"
#include "tests/test_util.h"

namespace fs = std::filesystem;
using namespace tq;
using tq::test::TempDir;
using tq::test::error_of;

namespace {

void write_text(const std::string& path, const std::string& text) {
  std::ofstream out(path, std::ios::binary);
  out << text;
}

bool contains(const std::string& s, const std::string& part) {
  return s.find(part) != std::string::npos;
}

}  // namespace

TEST_CASE("json: read_json_file parses a file") {
  TempDir dir("json_read");
  const std::string p = dir.file("config.json");
  write_text(p, R"({"hidden_size": 128, "rope_theta": 10000.0, "name": "tiny", "tie": true})");
  const Json j = read_json_file(p);
  CHECK(json_get<int64_t>(j, "hidden_size", "config.json") == 128);
  CHECK(json_get<int32_t>(j, "hidden_size", "config.json") == 128);
  CHECK(json_get<double>(j, "rope_theta", "config.json") == 10000.0);
  CHECK(json_get<double>(j, "hidden_size", "config.json") == 128.0);  // an integer is a number
  CHECK(json_get<std::string>(j, "name", "config.json") == "tiny");
  CHECK(json_get<bool>(j, "tie", "config.json"));
  CHECK(json_get_or<int64_t>(j, "absent", 7, "config.json") == 7);
}

TEST_CASE("json: read_json_file errors name the file and the position") {
  TempDir dir("json_err");
  const std::string missing = dir.file("missing.json");
  std::string msg = error_of([&] { read_json_file(missing); });
  CHECK(contains(msg, "[json]"));
  CHECK(contains(msg, missing));
  CHECK(contains(msg, "No such file"));

  const std::string bad = dir.file("bad.json");
  write_text(bad, "{\n  \"a\": 1,\n  \"b\": ,\n}\n");
  msg = error_of([&] { read_json_file(bad); });
  INFO(msg);
  CHECK(contains(msg, bad));
  CHECK(contains(msg, "line 3"));
  CHECK(contains(msg, "column"));
  CHECK(!contains(msg, "[json.exception"));

  const std::string empty = dir.file("empty.json");
  write_text(empty, "");
  msg = error_of([&] { read_json_file(empty); });
  CHECK(contains(msg, empty));

  msg = error_of([&] { read_json_file(dir.path.string()); });  // a directory
  CHECK(contains(msg, dir.path.string()));
}

TEST_CASE("json: typed getters report field, expected and actual kinds") {
  const Json j = Json::parse(R"({"hidden_size": "128", "eps": 1.5, "n": -3, "big": 300,
                                 "ids": [1, 2, "x"], "list": [1, 2, 3]})");
  CHECK_THROWS_WITH_AS(
      json_get<int64_t>(j, "hidden_size", "config.json"),
      doctest::Contains("[config.json] field 'hidden_size': expected integer, got string"), Error);
  CHECK_THROWS_WITH_AS(json_get<int64_t>(j, "eps", "config.json"),
                       doctest::Contains("field 'eps': expected integer, got number"), Error);
  CHECK_THROWS_WITH_AS(json_get<uint32_t>(j, "n", "config.json"),
                       doctest::Contains("field 'n': value -3 is outside [0, 4294967295]"), Error);
  CHECK_THROWS_WITH_AS(json_get<int8_t>(j, "big", "config.json"),
                       doctest::Contains("field 'big': value 300 is outside [-128, 127]"), Error);
  CHECK_THROWS_WITH_AS(json_get<int64_t>(j, "vocab_size", "config.json"),
                       doctest::Contains("[config.json] missing field 'vocab_size'"), Error);
  CHECK_THROWS_WITH_AS(json_get<std::vector<int64_t>>(j, "ids", "cfg"),
                       doctest::Contains("field 'ids[2]': expected integer, got string"), Error);
  CHECK(json_get<std::vector<int64_t>>(j, "list", "cfg") == std::vector<int64_t>{1, 2, 3});
  CHECK_THROWS_WITH_AS(json_get<int64_t>(Json::array(), "x", "cfg"),
                       doctest::Contains("expected object, got array"), Error);
  CHECK_THROWS_WITH_AS(json_check_keys(j, {"hidden_size", "eps", "n", "big", "ids"}, "cfg"),
                       doctest::Contains("[cfg] unknown field 'list'"), Error);
  CHECK_NOTHROW(json_check_keys(j, {"hidden_size", "eps", "n", "big", "ids", "list"}, "cfg"));
}

TEST_CASE("json: write_json_file round trip leaves no temp file") {
  TempDir dir("json_write");
  const std::string p = dir.file("state.json");
  Json j = {{"step", 12}, {"loss", 2.5}, {"name", "run"}};
  write_json_file(p, j);
  CHECK(read_json_file(p) == j);
  j["step"] = 13;
  write_json_file(p, j);  // replaces the existing file
  CHECK(read_json_file(p)["step"] == 13);
  int files = 0;
  for (const auto& e : fs::directory_iterator(dir.path)) {
    (void)e;
    ++files;
  }
  CHECK(files == 1);

  write_file_atomic(dir.file("raw.bin"), std::string("a\0b", 3));
  CHECK(fs::file_size(dir.file("raw.bin")) == 3);

  const std::string msg =
      error_of([&] { write_file_atomic(dir.file("no/such/dir/x.json"), "{}"); });
  CHECK(contains(msg, "[atomic_write]"));
  CHECK(contains(msg, "no/such/dir/x.json"));
}

TEST_CASE("json: AtomicFileWriter without commit leaves the target untouched") {
  TempDir dir("json_abort");
  const std::string p = dir.file("keep.txt");
  write_file_atomic(p, "old");
  {
    AtomicFileWriter w(p);
    w.write("new contents", 12);
    CHECK(fs::exists(w.temp_path()));
  }  // destroyed without commit, as when an exception unwinds
  std::ifstream in(p);
  std::string s;
  in >> s;
  CHECK(s == "old");
  int files = 0;
  for (const auto& e : fs::directory_iterator(dir.path)) {
    (void)e;
    ++files;
  }
  CHECK(files == 1);
}
