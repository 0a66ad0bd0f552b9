// A file truncated while it is mapped turns the next touch of the lost pages into SIGBUS, which
// would kill the process with a signal and leave half-written outputs behind. The guard turns it
// into esa's one-line error and a plain exit status: MappedFile registers each mapping; a SIGBUS
// inside one prints "esa: error: <path>: the file shrank while mapped ..." and exits 1, after
// removing the temporary outputs and lock files registered here (AtomicOutput, OutputLock). All
// state is fixed-size and the handler makes only async-signal-safe calls.
#pragma once

#include <cstddef>
#include <string>

namespace esa {

/// Guards [base, base + size) as a mapping of `path`; returns a slot for unguard_mapping (-1 when
/// every slot is taken: that mapping is unguarded).
int guard_mapping(const void* base, size_t size, const std::string& path);
void unguard_mapping(int slot);

/// A file to remove if the process ends on a guarded fault; returns a slot (-1: none free).
int remove_on_fault(const std::string& path);
void keep_on_fault(int slot);

}  // namespace esa
