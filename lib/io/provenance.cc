// write_provenance and check_format; see provenance.h.
#include "io/provenance.h"

#include "core/error.h"
#include "core/run_info.h"
#include "core/version.h"

namespace esa::io {

void write_provenance(H5File& file, const Provenance& p) {
  file.set_attr("/", "format", p.format);
  file.set_attr("/", "format_version", p.format_version);
  file.set_attr("/", "esa_version", version());
  file.set_attr("/", "git_revision", git_revision());
  file.set_attr("/", "command_line", command_line());
  file.set_attr("/", "created", utc_timestamp());
  file.set_attr("/", "model", p.model);
  file.set_attr("/", "model_sha256", p.model_sha256);
  file.set_attr("/", "seed", int64_t(p.seed));
  file.set_attr("/", "device", p.device);
}

void check_format(const H5File& file, const std::string& format, int64_t max_version) {
  const std::string got = file.has_attr("/", "format") ? file.attr_string("/", "format") : std::string("<none>");
  ESA_CHECK(got == format, "{}: not an esa {} file (format attribute is '{}')", file.path(), format, got);
  const int64_t v = file.attr_int("/", "format_version");
  ESA_CHECK(v >= 1 && v <= max_version, "{}: {} format version {} is newer than this esa reads ({})", file.path(),
            format, v, max_version);
}

}  // namespace esa::io
