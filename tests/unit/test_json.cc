// parse_json, the one JSON reader (core/file_io.h): depth cap, top-level key order, one-line
// excerpts of values for messages, and a wide object in linear-logarithmic time.
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <chrono>
#include <functional>
#include <string>

#include "core/error.h"
#include "core/file_io.h"

namespace esa {
namespace {

std::string error_of(const std::string& text) {
  try {
    parse_json(text, "x.json");
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

TEST(Json, NestingPastTheCapIsOneLineErrorNotACrash) {
  const std::string ok = std::string(kMaxJsonDepth, '[') + std::string(kMaxJsonDepth, ']');
  EXPECT_NO_THROW(parse_json(ok, "x.json"));
  for (const char* open_close : {"[]", "{}"}) {
    std::string deep;
    for (int i = 0; i < 1000000; ++i) deep += open_close[0] == '[' ? "[" : "{\"a\":";
    deep += "1";
    const std::string msg = error_of(deep);
    EXPECT_NE(msg.find("x.json: JSON nested deeper than 64 levels"), std::string::npos) << msg.substr(0, 200);
    EXPECT_EQ(msg.find('\n'), std::string::npos);
  }
  EXPECT_NE(error_of("{\"a\": ").find("x.json: not valid JSON"), std::string::npos);
}

TEST(Json, TopKeysInTextOrderOnce) {
  std::vector<std::string> keys;
  const nlohmann::json j = parse_json(R"({"b": {"z": 1, "y": 2}, "a": 2, "c": [1], "b": 3})", "x.json", &keys);
  EXPECT_EQ(keys, (std::vector<std::string>{"b", "a", "c"}));
  EXPECT_EQ(j.at("b"), 3);  // a duplicate key: the last value, as nlohmann keeps it
}

TEST(Json, WideObjectParsesInLinearLogTime) {
  std::string wide = "{";
  for (int i = 0; i < 300000; ++i) wide += (i ? ",\"" : "\"") + std::to_string(i) + "\":" + std::to_string(i);
  wide += "}";
  std::vector<std::string> keys;
  const auto t0 = std::chrono::steady_clock::now();
  const nlohmann::json j = parse_json(wide, "x.json", &keys);
  const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  EXPECT_EQ(j.size(), 300000u);
  EXPECT_EQ(keys.front(), "0");
  EXPECT_EQ(keys.back(), "299999");
  // Not a timing test: an insertion-ordered object is quadratic and takes minutes here.
  EXPECT_LT(s, 30.0);
}

TEST(Json, ExcerptsAreShortAndOneLine) {
  EXPECT_EQ(json_excerpt(nlohmann::json::parse("[0, 12]")), "[0,12]");
  EXPECT_EQ(json_excerpt(nlohmann::json::parse("[[1], 2]")), "a JSON array of 2 entries");
  EXPECT_EQ(json_excerpt(nlohmann::json::parse(R"({"a": {"b": 1}})")), "a JSON object of 1 entry");
  const std::string text = json_excerpt(nlohmann::json(std::string("line\nbreak") + std::string(100, 'x')));
  EXPECT_EQ(text.find('\n'), std::string::npos);
  EXPECT_LE(text.size(), 40u);
}

// A FIFO, a device and a folder are refused before any read: no open() that waits for a writer,
// no read of /dev/zero until memory runs out.
TEST(FileIo, WhatIsNotARegularFileIsRefusedWithoutBlocking) {
  char dir_template[] = "/tmp/esa_fifo_XXXXXX";
  const std::string dir = ::mkdtemp(dir_template);
  const std::string fifo = dir + "/pipe";
  ASSERT_EQ(::mkfifo(fifo.c_str(), 0600), 0);
  auto message = [](const std::function<void()>& f) {
    try {
      f();
    } catch (const Error& e) {
      return std::string(e.what());
    }
    return std::string();
  };
  EXPECT_NE(message([&] { read_file(fifo); }).find(fifo + ": not a regular file (a FIFO)"), std::string::npos);
  EXPECT_NE(message([&] { read_prefix(fifo, 4); }).find("(a FIFO)"), std::string::npos);
  EXPECT_NE(message([&] { read_file("/dev/zero"); }).find("/dev/zero: not a regular file (a character device)"),
            std::string::npos);
  EXPECT_NE(message([&] { read_file(dir); }).find("is a folder"), std::string::npos);
  EXPECT_NE(message([&] { read_file(dir + "/absent"); }).find("absent: no such file"), std::string::npos);
  ::unlink(fifo.c_str());
  ::rmdir(dir.c_str());
}

}  // namespace
}  // namespace esa
