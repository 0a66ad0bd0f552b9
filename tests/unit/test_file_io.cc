// core/file_io.h and the fault guard: parse_json, the one JSON reader (depth cap, top-level key
// order, one-line excerpts of values for messages, a wide object whole and in order);
// reads that refuse what is not a regular file; a mapped file truncated under the reader.
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <functional>
#include <string>

#include "core/atomic_output.h"
#include "core/error.h"
#include "core/file_io.h"
#include "core/mapped_file.h"

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

// A wide object (a safetensors header of many tensors) keeps every key and their order. (The
// quadratic insertion-ordered object this reader replaced took minutes here; speed itself is for
// benchmarks, not tests.)
TEST(Json, WideObjectKeepsEveryKeyInOrder) {
  std::string wide = "{";
  for (int i = 0; i < 300000; ++i) wide += (i ? ",\"" : "\"") + std::to_string(i) + "\":" + std::to_string(i);
  wide += "}";
  std::vector<std::string> keys;
  const nlohmann::json j = parse_json(wide, "x.json", &keys);
  EXPECT_EQ(j.size(), 300000u);
  ASSERT_EQ(keys.size(), 300000u);
  for (size_t i = 0; i < keys.size(); i += 9973) EXPECT_EQ(keys[i], std::to_string(i));
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

// A mapped file truncated under the reader: SIGBUS becomes the one-line error and exit status 1,
// and the run's temporary output is removed (in a child process: the fault ends it).
TEST(FileIo, MappedFileTruncatedWhileReadIsOneLineErrorNotASignal) {
#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
  GTEST_SKIP() << "the sanitizers own SIGBUS";
#elif defined(__has_feature)
#if __has_feature(address_sanitizer) || __has_feature(thread_sanitizer)
  GTEST_SKIP() << "the sanitizers own SIGBUS";
#endif
#endif
  char dir_template[] = "/tmp/esa_sigbus_XXXXXX";
  const std::string dir = ::mkdtemp(dir_template);
  const std::string path = dir + "/model.gguf", out = dir + "/out.h5";
  { std::ofstream(path, std::ios::binary) << std::string(1 << 20, 'x'); }
  int pipe_fd[2];
  ASSERT_EQ(::pipe(pipe_fd), 0);
  const pid_t child = ::fork();
  ASSERT_GE(child, 0);
  if (child == 0) {
    ::dup2(pipe_fd[1], STDERR_FILENO);
    const AtomicOutput output(out, true);
    { std::ofstream(output.temp_path()) << "partial"; }
    const MappedFile mapped(path);
    if (::truncate(path.c_str(), 0) != 0) ::_exit(3);
    volatile uint8_t sink = mapped.data()[(1 << 20) - 1];  // past the new end: SIGBUS
    (void)sink;
    ::_exit(4);  // not reached
  }
  ::close(pipe_fd[1]);
  std::string err;
  char buf[512];
  for (ssize_t n; (n = ::read(pipe_fd[0], buf, sizeof buf)) > 0;) err.append(buf, size_t(n));
  ::close(pipe_fd[0]);
  int status = 0;
  ASSERT_EQ(::waitpid(child, &status, 0), child);
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 1) << "status " << status;
  EXPECT_EQ(err, "esa: error: " + path + ": the file shrank while mapped (truncated or replaced by another program "
                 "while esa read it)\n");
  int leftovers = 0;
  for (const auto& e : std::filesystem::directory_iterator(dir)) leftovers += e.path().filename() != "model.gguf";
  EXPECT_EQ(leftovers, 0) << "the temporary output is removed";
  std::filesystem::remove_all(dir);
}

}  // namespace
}  // namespace esa
