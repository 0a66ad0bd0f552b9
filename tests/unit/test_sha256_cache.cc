// lib/core/sha256_cache: a recorded (path, size, mtime) is answered from the store; a changed size
// or mtime re-hashes; a corrupt, unreadable or unwritable store is ignored (the right hash, never
// a crash); files still settling are not recorded; $ESA_HASH_CACHE picks or disables the store.
#include <gtest/gtest.h>

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <optional>
#include <string>

#include "core/error.h"
#include "core/sha256.h"
#include "core/sha256_cache.h"
#include "support/gguf_writer.h"
#include "support/test_support.h"

namespace esa {
namespace {
namespace fs = std::filesystem;
using namespace std::chrono_literals;

// A file whose mtime is an hour (plus `shift`) in the past, so the cache records it.
void write_old(const std::string& path, const std::string& bytes, std::chrono::seconds shift = 0s) {
  test::write_file(path, bytes);
  fs::last_write_time(path, fs::file_time_type::clock::now() - 1h - shift);
}

std::string lines_of(const std::string& store) {
  return fs::exists(store) ? test::read_file(store) : std::string();
}

class Sha256Cache : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = test::temp_dir();
    file_ = dir_ + "/model.bin";
    store_ = dir_ + "/cache/sha256";  // its folder does not exist yet: the cache creates it
  }
  std::string dir_, file_, store_;
};

TEST_F(Sha256Cache, RecordsThenAnswersFromTheStore) {
  write_old(file_, "weights v1");
  const std::string want = sha256_hex("weights v1");
  EXPECT_EQ(sha256_file_cached(file_, store_), want);
  const std::string stored = lines_of(store_);
  // One line: size, mtime in ns, hash, canonical path.
  EXPECT_NE(stored.find("10 "), std::string::npos) << stored;
  EXPECT_NE(stored.find(" " + want + " " + fs::canonical(file_).string() + "\n"), std::string::npos) << stored;
  EXPECT_EQ(std::count(stored.begin(), stored.end(), '\n'), 1) << stored;

  // The second call reads the store, not the file: a planted hash for the same stamp is returned.
  std::string planted = stored;
  planted.replace(planted.find(want), 64, std::string(64, 'a'));
  test::write_file(store_, planted);
  EXPECT_EQ(sha256_file_cached(file_, store_), std::string(64, 'a'));
  // Through another spelling of the same path (a symlink): the same entry.
  fs::create_symlink(file_, dir_ + "/link.bin");
  EXPECT_EQ(sha256_file_cached(dir_ + "/link.bin", store_), std::string(64, 'a'));
}

TEST_F(Sha256Cache, ChangedMtimeRehashes) {
  write_old(file_, "weights v1");
  EXPECT_EQ(sha256_file_cached(file_, store_), sha256_hex("weights v1"));
  write_old(file_, "weights v2", 10s);  // same size, another mtime
  EXPECT_EQ(sha256_file_cached(file_, store_), sha256_hex("weights v2"));
  const std::string stored = lines_of(store_);
  EXPECT_EQ(std::count(stored.begin(), stored.end(), '\n'), 1) << "the old entry is replaced: " << stored;
  EXPECT_EQ(sha256_file_cached(file_, store_), sha256_hex("weights v2"));
}

TEST_F(Sha256Cache, ChangedSizeRehashes) {
  write_old(file_, "weights v1");
  EXPECT_EQ(sha256_file_cached(file_, store_), sha256_hex("weights v1"));
  const auto mtime = fs::last_write_time(file_);
  test::write_file(file_, "weights v1 and more");
  fs::last_write_time(file_, mtime);  // same mtime, another size
  EXPECT_EQ(sha256_file_cached(file_, store_), sha256_hex("weights v1 and more"));
}

TEST_F(Sha256Cache, CorruptStoreIsIgnored) {
  write_old(file_, "weights v1");
  const std::string want = sha256_hex("weights v1");
  const std::string key = fs::canonical(file_).string();
  const auto size_mtime = [&] {
    const auto ns = std::chrono::duration_cast<std::chrono::nanoseconds>(
        std::chrono::file_clock::to_sys(fs::last_write_time(file_)).time_since_epoch());
    return std::to_string(fs::file_size(file_)) + " " + std::to_string(ns.count());
  }();
  const std::string bad = std::string(64, 'b');
  const std::string stores[] = {
      std::string("\0\xff\x01garbage\n\n\n", 13),
      size_mtime + " " + bad + " " + key,                      // cut off: no final newline
      size_mtime + " " + bad.substr(0, 63) + " " + key + "\n",  // short hash
      size_mtime + " " + std::string(64, 'B') + " " + key + "\n",  // not lower-case hex
      "x" + size_mtime + " " + bad + " " + key + "\n",          // size not a number
      "99999999999999999999999 0 " + bad + " " + key + "\n",    // size overflows
      size_mtime + " " + bad + " relative/path\n",
      size_mtime + " " + bad + "\n",
      std::string(5 << 20, '\n'),  // far too large to be ours
      "",
  };
  fs::create_directories(fs::path(store_).parent_path());
  for (const std::string& content : stores) {
    test::write_file(store_, content);
    EXPECT_EQ(sha256_file_cached(file_, store_), want) << "store: " << content.substr(0, 200);
    // The store is rewritten with a good entry, and that one is then used.
    EXPECT_NE(lines_of(store_).find(want + " " + key + "\n"), std::string::npos);
  }
}

TEST_F(Sha256Cache, UnusableStoreStillHashes) {
  write_old(file_, "weights v1");
  const std::string want = sha256_hex("weights v1");
  fs::create_directories(store_);  // the store's path is a folder: neither readable nor writable
  EXPECT_EQ(sha256_file_cached(file_, store_), want);
  test::write_file(dir_ + "/plain", "x");  // the store's folder is a file
  EXPECT_EQ(sha256_file_cached(file_, dir_ + "/plain/sha256"), want);
  EXPECT_EQ(sha256_file_cached(file_, ""), want);  // caching off
}

TEST_F(Sha256Cache, SettlingFileIsNotRecorded) {
  test::write_file(file_, "still being written");
  EXPECT_EQ(sha256_file_cached(file_, store_), sha256_hex("still being written"));
  EXPECT_EQ(lines_of(store_).find(fs::canonical(file_).string()), std::string::npos) << lines_of(store_);
}

TEST_F(Sha256Cache, MissingFileIsSha256FilesError) {
  try {
    sha256_file_cached(dir_ + "/none.gguf", store_);
    FAIL() << "no error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("none.gguf"), std::string::npos) << e.what();
  }
}

TEST_F(Sha256Cache, EnvironmentPicksTheStore) {
  const auto get = [](const char* name) -> std::optional<std::string> {
    const char* v = std::getenv(name);
    return v != nullptr ? std::optional<std::string>(v) : std::nullopt;
  };
  const auto old_cache = get("ESA_HASH_CACHE"), old_xdg = get("XDG_CACHE_HOME"), old_home = get("HOME");
  ::setenv("ESA_HASH_CACHE", "0", 1);
  EXPECT_EQ(sha256_cache_path(), "");
  ::setenv("ESA_HASH_CACHE", store_.c_str(), 1);
  EXPECT_EQ(sha256_cache_path(), store_);
  write_old(file_, "weights v1");
  EXPECT_EQ(sha256_file_cached(file_), sha256_hex("weights v1"));
  EXPECT_TRUE(fs::exists(store_));
  ::unsetenv("ESA_HASH_CACHE");
  ::setenv("XDG_CACHE_HOME", "/xdg", 1);
  EXPECT_EQ(sha256_cache_path(), "/xdg/esa/sha256");
  ::unsetenv("XDG_CACHE_HOME");
  ::setenv("HOME", "/home/u", 1);
  EXPECT_EQ(sha256_cache_path(), "/home/u/.cache/esa/sha256");
  const auto restore = [](const char* name, const std::optional<std::string>& v) {
    if (v) ::setenv(name, v->c_str(), 1);
    else ::unsetenv(name);
  };
  restore("ESA_HASH_CACHE", old_cache);
  restore("XDG_CACHE_HOME", old_xdg);
  restore("HOME", old_home);
}

}  // namespace
}  // namespace esa
