#include "core/version.h"

namespace esa {

const char* version() { return ESA_VERSION; }

}  // namespace esa
