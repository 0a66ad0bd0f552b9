// esa::Error and the checks that raise it.
//
// User and file errors (a bad flag, a corrupt model file, a shape that does not fit) throw
// esa::Error with a one-line message that names the input, the field, what was expected and what
// was found. `main` catches it once, prints it and exits non-zero; library code never exits.
// Internal invariants use assert().
#pragma once

#include <fmt/format.h>

#include <stdexcept>
#include <string>

namespace esa {

/// The one exception type for errors a user can cause or fix.
class Error : public std::runtime_error {
 public:
  explicit Error(const std::string& message) : std::runtime_error(message) {}
};

}  // namespace esa

/// Throws esa::Error with a fmt-formatted message when `cond` is false.
#define ESA_CHECK(cond, ...)                                   \
  do {                                                         \
    if (!(cond)) throw ::esa::Error(::fmt::format(__VA_ARGS__)); \
  } while (0)

/// Throws esa::Error with a fmt-formatted message.
#define ESA_FAIL(...) throw ::esa::Error(::fmt::format(__VA_ARGS__))
