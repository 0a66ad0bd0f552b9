// What every result file records about the run that made it (besides the model and config):
// the command line and the time.
#pragma once

#include <string>

namespace esa {

/// Recorded once by main(): the arguments, shell-quoted where needed, joined by spaces.
void set_command_line(int argc, const char* const* argv);
/// The recorded command line ("" in tests that never set it).
const std::string& command_line();
/// Now, as an ISO-8601 UTC timestamp ("2026-11-25T20:43:16Z").
std::string utc_timestamp();

}  // namespace esa
