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
#include <string_view>
#include <type_traits>
#include <utility>

namespace esa {

/// The one exception type for errors a user can cause or fix.
class Error : public std::runtime_error {
 public:
  explicit Error(const std::string& message) : std::runtime_error(message) {}
};

namespace detail {

/// A string a message quotes may come from a file (an architecture name, a tensor name, a key)
/// and be megabytes long: longer than kMaxQuotedBytes, it is shown as its head, its length and
/// its tail (a path keeps its file name). Every ESA_CHECK / ESA_FAIL argument goes through it.
inline constexpr size_t kMaxQuotedBytes = 1024;
inline std::string shortened(std::string_view text) {
  if (text.size() <= kMaxQuotedBytes) return std::string(text);
  const size_t head = kMaxQuotedBytes * 3 / 4, tail = kMaxQuotedBytes / 4;
  return fmt::format("{}…[{} bytes in all]…{}", text.substr(0, head), text.size(), text.substr(text.size() - tail));
}

template <typename T>
decltype(auto) bounded(T&& value) {
  using Plain = std::remove_cvref_t<T>;
  if constexpr (std::is_convertible_v<const Plain&, std::string_view>) {
    if constexpr (std::is_pointer_v<Plain>) {
      if (value == nullptr) return std::string("(null)");
    }
    return shortened(std::string_view(value));
  } else {
    return std::forward<T>(value);  // views (fmt::join) must stay rvalues
  }
}

template <typename... T>
[[noreturn]] void fail(fmt::format_string<std::remove_cvref_t<decltype(bounded(std::declval<T>()))>...> format,
                       T&&... args) {
  // Checked at compile time as `format`; formatted at run time with the bounded arguments.
  throw Error(fmt::format(fmt::runtime(fmt::string_view(format)), bounded(std::forward<T>(args))...));
}

}  // namespace detail
}  // namespace esa

/// Throws esa::Error with a fmt-formatted message when `cond` is false.
#define ESA_CHECK(cond, ...)                          \
  do {                                                \
    if (!(cond)) ::esa::detail::fail(__VA_ARGS__);    \
  } while (0)

/// Throws esa::Error with a fmt-formatted message.
#define ESA_FAIL(...) ::esa::detail::fail(__VA_ARGS__)
