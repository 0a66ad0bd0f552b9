// A per-user cache of file hashes, so that every eval / sweep / calibrate / info of the same
// model file does not re-read and re-hash it (98 MB for the embedded model, hundreds of GB for
// large checkpoints). An entry is keyed by the file's absolute (canonical) path, its size and its
// modification time in nanoseconds; any change of size or mtime re-hashes.
//
// The store is one text file, a line per file: "<size> <mtime_ns> <sha256> <path>\n", rewritten
// atomically (temporary file + rename) on every new entry. Where it lives:
//   $ESA_HASH_CACHE          unset: ${XDG_CACHE_HOME:-$HOME/.cache}/esa/sha256;
//                            "0" or "off": no cache (every call hashes); otherwise the store's path
// The cache never decides a result on its own: an unreadable, corrupt or unwritable store is
// ignored (the file is hashed), a line that does not parse is dropped, and a file modified less
// than two seconds ago is hashed but not recorded (it may still be being written, in the same
// mtime tick).
#pragma once

#include <string>

namespace esa {

/// The store's path from $ESA_HASH_CACHE / $XDG_CACHE_HOME / $HOME; "" when caching is off.
std::string sha256_cache_path();

/// sha256_file(path), looked up in / recorded into the store at `cache_path` ("" = no cache).
/// Throws only what sha256_file throws (the file itself cannot be read).
std::string sha256_file_cached(const std::string& path, const std::string& cache_path);
/// The same with the store of sha256_cache_path().
std::string sha256_file_cached(const std::string& path);

}  // namespace esa
