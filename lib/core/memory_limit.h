// --max-memory: the most memory esa may use. The big allocations (weights, the KV cache, datasets
// read from HDF5) are checked against it *before* they are made, so that an input too large for
// the machine ends in one line saying what would fit, not in the kernel's OOM killer.
#pragma once

#include <cstdint>
#include <string>

namespace esa {

/// The limit in bytes: the last set_max_memory(), else 90% of the memory this process may use
/// (physical memory, or the cgroup's limit when lower).
uint64_t max_memory();
void set_max_memory(uint64_t bytes);
/// Parses "512M", "8G", "1.5GiB", "64000000" (bytes) or "75%" (of the default's base).
/// Throws esa::Error naming the text when it is not one of those.
uint64_t parse_memory_size(const std::string& text);
/// Memory the process holds now (resident set), in bytes.
uint64_t resident_memory();

/// Checks that `units` more units of `bytes_per_unit` fit next to what is resident. Otherwise
/// throws "<what>: N <unit> need X GiB, Y GiB is in use and --max-memory is Z GiB: at most M
/// <unit> fit"; with an empty `unit`, "<what> need X GiB, ...: raise --max-memory or use less".
void check_memory(const std::string& what, uint64_t units, uint64_t bytes_per_unit, const std::string& unit);

}  // namespace esa
