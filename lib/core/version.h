// Version of esa and the git revision it was built from (recorded in every result file).
#pragma once

namespace esa {

/// Semantic version from CMakeLists.txt's project().
const char* version();
/// Short git revision at build time, "-dirty" when tracked files were modified, or "unknown".
const char* git_revision();

}  // namespace esa
