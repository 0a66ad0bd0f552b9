// HDF5 wrapper; see hdf5.h. Uses the C API: every call's status is checked and turned into an
// esa::Error naming the file and object, and every handle is closed by a small RAII guard.
#include "io/hdf5.h"

#include <limits>

#include <hdf5.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <set>
#include <utility>

#include "core/child_probe.h"
#include "core/error.h"
#include "core/file_io.h"
#include "core/half.h"
#include "core/memory_limit.h"

namespace esa::io {
namespace {

static_assert(sizeof(hid_t) == sizeof(int64_t), "hid_t is 64-bit since HDF5 1.10");

// HDF5 prints its error stack to stderr by default; esa reports its own one-line errors.
// H5dont_atexit (before any other HDF5 call): a file whose close failed (a full disk) stays
// registered, and libhdf5 1.10's exit handler crashes closing it again (SIGSEGV in
// H5F__close_cb after the error was reported). The OS closes the descriptor at exit anyway.
void quiet_hdf5() {
  static const bool done = [] {
    H5dont_atexit();
    H5Eset_auto2(H5E_DEFAULT, nullptr, nullptr);
    return true;
  }();
  (void)done;
}

// Closes an HDF5 identifier with the function for its kind.
class Handle {
 public:
  Handle() = default;
  Handle(hid_t id, herr_t (*close)(hid_t)) : id_(id), close_(close) {}
  Handle(Handle&& o) noexcept : id_(std::exchange(o.id_, -1)), close_(o.close_) {}
  Handle& operator=(Handle&& o) noexcept {
    reset();
    id_ = std::exchange(o.id_, -1);
    close_ = o.close_;
    return *this;
  }
  ~Handle() { reset(); }
  hid_t get() const { return id_; }
  bool ok() const { return id_ >= 0; }
  void reset() {
    if (id_ >= 0 && close_ != nullptr) close_(id_);
    id_ = -1;
  }

 private:
  hid_t id_ = -1;
  herr_t (*close_)(hid_t) = nullptr;
};

// IEEE binary16, little-endian, as h5py defines it (numpy float16 on the Python side).
hid_t half_type() {
  static const hid_t type = [] {
    hid_t t = H5Tcopy(H5T_IEEE_F32LE);
    H5Tset_fields(t, 15, 10, 5, 0, 10);
    H5Tset_size(t, 2);
    H5Tset_ebias(t, 15);
    H5Tlock(t);
    return t;
  }();
  return type;
}

// One of the standard integer or IEEE float layouts (or esa's fp16). A file can declare an
// integer of any precision and bit offset, or a float of any field layout, and libhdf5 1.10's
// conversion of such a type to double reads past its buffers (a fuzz_hdf5 find): refuse those.
bool is_standard_number(hid_t type) {
  static const hid_t standard[] = {H5T_STD_I8LE,  H5T_STD_I8BE,  H5T_STD_I16LE, H5T_STD_I16BE, H5T_STD_I32LE,
                                   H5T_STD_I32BE, H5T_STD_I64LE, H5T_STD_I64BE, H5T_STD_U8LE,  H5T_STD_U8BE,
                                   H5T_STD_U16LE, H5T_STD_U16BE, H5T_STD_U32LE, H5T_STD_U32BE, H5T_STD_U64LE,
                                   H5T_STD_U64BE, H5T_IEEE_F32LE, H5T_IEEE_F32BE, H5T_IEEE_F64LE, H5T_IEEE_F64BE};
  for (hid_t t : standard) {
    if (H5Tequal(type, t) > 0) return true;
  }
  return H5Tequal(type, half_type()) > 0;
}

// Strings are fixed-length (NUL-padded UTF-8 of the longest one's size), never variable-length:
// variable-length strings live in HDF5's global heap, and libhdf5 1.10's global-heap reader
// crashes, hangs or allocates without bound on a corrupt file (tests/fuzz/README.md, found by
// fuzz_hdf5). A reader that refuses them never reaches that code.
Handle fixed_string_type(size_t size) {
  Handle t(H5Tcopy(H5T_C_S1), H5Tclose);
  H5Tset_size(t.get(), std::max<size_t>(size, 1));
  H5Tset_strpad(t.get(), H5T_STR_NULLPAD);
  H5Tset_cset(t.get(), H5T_CSET_UTF8);
  return t;
}

// The file's string type, checked to be one esa reads; its size in bytes.
size_t checked_string_size(const std::string& where, hid_t type) {
  ESA_CHECK(type >= 0 && H5Tget_class(type) == H5T_STRING, "{}: not a string", where);
  ESA_CHECK(H5Tis_variable_str(type) <= 0,
            "{}: a variable-length string (a file from esa before 2026-11-26, or not esa's): convert it with "
            "scripts/h5_upgrade.py",
            where);
  const size_t size = H5Tget_size(type);
  ESA_CHECK(size >= 1 && size <= (size_t(1) << 30), "{}: a string of {} bytes (a corrupt file?)", where, size);
  return size;
}

Handle link_create_plist() {
  Handle p(H5Pcreate(H5P_LINK_CREATE), H5Pclose);
  H5Pset_create_intermediate_group(p.get(), 1);
  return p;
}

std::vector<hsize_t> to_hsize(const std::vector<int64_t>& shape) {
  std::vector<hsize_t> out;
  for (int64_t d : shape) out.push_back(hsize_t(d));
  return out;
}

size_t element_count(const std::vector<int64_t>& shape) {
  size_t n = 1;
  for (int64_t d : shape) n *= size_t(d);
  return n;
}

// A dataset's claimed size is file data: a corrupt or hostile file can claim 2^62 elements. Before
// allocating for a read, the element count must not overflow and the bytes must fit in
// --max-memory (core/memory_limit.h); otherwise the file is refused instead of the process dying.
size_t checked_read_count(const std::string& where, const std::vector<int64_t>& shape, size_t element_bytes) {
  uint64_t n = 1;
  for (int64_t d : shape) {
    ESA_CHECK(d >= 0, "{}: negative dimension {}", where, d);
    ESA_CHECK(d == 0 || n <= std::numeric_limits<uint64_t>::max() / uint64_t(d) / element_bytes,
              "{}: its shape overflows (a corrupt file?)", where);
    n *= uint64_t(d);
  }
  check_memory(fmt::format("{}: reading it", where), n, element_bytes, "values");
  return size_t(n);
}

// libhdf5 inflates a whole chunk to read any part of it, and a chunk's shape is file data: one
// chunk may claim up to 4 GiB whatever the dataset's size. Checked like a read of that many values.
void check_chunk_memory(hid_t ds, const std::string& where) {
  Handle plist(H5Dget_create_plist(ds), H5Pclose);
  if (!plist.ok() || H5Pget_layout(plist.get()) != H5D_CHUNKED) return;
  const int rank = H5Pget_chunk(plist.get(), 0, nullptr);
  ESA_CHECK(rank > 0 && rank <= 32, "{}: bad chunk layout", where);
  std::vector<hsize_t> chunk(size_t(rank), 0);
  ESA_CHECK(H5Pget_chunk(plist.get(), rank, chunk.data()) == rank, "{}: bad chunk layout", where);
  Handle type(H5Dget_type(ds), H5Tclose);
  const uint64_t value_bytes = type.ok() ? std::max<uint64_t>(H5Tget_size(type.get()), 1) : 1;
  uint64_t n = 1;
  for (hsize_t d : chunk) n = (d != 0 && n > (uint64_t(1) << 40) / d) ? (uint64_t(1) << 40) : n * d;
  check_memory(fmt::format("{}: one chunk of it", where), n, value_bytes, "values");
}

// Whether a number read from a file is an integer that int64_t holds (casting one that is not,
// 5e58 or NaN, is undefined behaviour: found by fuzz_hdf5).
bool is_int64(double x) { return x >= -9.2e18 && x <= 9.2e18 && x == std::trunc(x); }

}  // namespace

// ---- structure check in a child process ---------------------------------------------------------
//
// libhdf5 1.10 reads some corrupt object headers past the end of its buffers (H5O__msg_iterate_real
// under H5Aexists: tests/fuzz/regressions/fuzz_hdf5/H5O_*); depending on what lies beyond, it
// segfaults or reads garbage. esa cannot mend libhdf5, so before a file is opened in this process
// a forked child walks its whole structure (every group, dataset and attribute header, with the
// calls esa's readers make) and the file is refused with one line if the child dies.

constexpr int kWalkMaxDepth = 64;         // deeper nesting is a cycle of hard links
constexpr long kWalkMaxObjects = 200000;  // far more than any file esa writes: stop walking there
constexpr double kWalkTimeoutSeconds = 60;

herr_t check_attribute(hid_t object, const char* name, const H5A_info_t*, void*) {
  Handle attr(H5Aopen(object, name, H5P_DEFAULT), H5Aclose);
  if (!attr.ok()) return 0;
  Handle type(H5Aget_type(attr.get()), H5Tclose);
  Handle space(H5Aget_space(attr.get()), H5Sclose);
  if (!type.ok() || !space.ok()) return 0;
  const H5T_class_t kind = H5Tget_class(type.get());
  const hssize_t count = H5Sget_simple_extent_npoints(space.get());
  // Numbers are read as the readers read them (converted to double; conversion is libhdf5 code
  // that corrupt type messages crash too), and only those the readers would read.
  if ((kind == H5T_INTEGER || kind == H5T_FLOAT) && is_standard_number(type.get()) && count > 0 &&
      count <= (1 << 16)) {
    std::vector<double> values(static_cast<size_t>(count));
    (void)H5Aread(attr.get(), H5T_NATIVE_DOUBLE, values.data());
  }
  return 0;
}

// An object's identity in its file: hard links fanning out (a group linked many times from each
// level) would otherwise be walked once per path, exponentially in the depth.
std::string object_identity(hid_t object) {
#if H5_VERSION_GE(1, 12, 0)
  H5O_info2_t info;
  if (H5Oget_info3(object, &info, H5O_INFO_BASIC) < 0) return {};
  return std::string(reinterpret_cast<const char*>(&info.token), sizeof info.token);
#else
  H5O_info_t info;
  if (H5Oget_info2(object, &info, H5O_INFO_BASIC) < 0) return {};
  return std::string(reinterpret_cast<const char*>(&info.addr), sizeof info.addr);
#endif
}

void walk_object(hid_t object, int depth, long& objects, std::set<std::string>& visited) {
  if (depth > kWalkMaxDepth || ++objects > kWalkMaxObjects) return;
  const std::string identity = object_identity(object);
  if (!identity.empty() && !visited.insert(identity).second) return;  // reached before by another link
  (void)H5Aexists(object, "\x01esa-structure-check");  // a name no file has: every attribute message is read
  hsize_t index = 0;
  (void)H5Aiterate2(object, H5_INDEX_NAME, H5_ITER_INC, &index, check_attribute, nullptr);
  if (H5Iget_type(object) == H5I_DATASET) {
    Handle type(H5Dget_type(object), H5Tclose);
    Handle space(H5Dget_space(object), H5Sclose);
    Handle plist(H5Dget_create_plist(object), H5Pclose);
    if (space.ok()) (void)H5Sget_simple_extent_npoints(space.get());
    if (type.ok()) (void)H5Tget_class(type.get()), (void)H5Tget_size(type.get());
    return;
  }
  H5G_info_t info;
  if (H5Iget_type(object) != H5I_GROUP || H5Gget_info(object, &info) < 0) return;
  for (hsize_t i = 0; i < info.nlinks && objects <= kWalkMaxObjects; ++i) {
    char name[1024];
    const ssize_t len = H5Lget_name_by_idx(object, ".", H5_INDEX_NAME, H5_ITER_INC, i, name, sizeof name, H5P_DEFAULT);
    if (len <= 0 || size_t(len) >= sizeof name || H5Lexists(object, name, H5P_DEFAULT) <= 0) continue;
    Handle child(H5Oopen(object, name, H5P_DEFAULT), H5Oclose);
    if (child.ok()) walk_object(child.get(), depth + 1, objects, visited);
  }
}

void walk_file(hid_t file) {
  Handle root(H5Oopen(file, "/", H5P_DEFAULT), H5Oclose);
  long objects = 0;
  std::set<std::string> visited;
  if (root.ok()) walk_object(root.get(), 0, objects, visited);
}

// Whether an over-read faults (or trips a sanitizer) depends on what lies past the buffer, so the
// child alone proves nothing about a later, different sequence of calls here. But the child starts
// from this process's heap as it is now: when open() then repeats the same open and walk
// in-process, it replays what the child survived, and libhdf5 keeps the decoded headers cached
// for the readers that follow (they do not decode the messages again).
void check_structure_in_child(const std::string& path) {
  const ChildProbe probe = probe_in_child(
      [&] {
        // Read-only even for open_rw: the child must not write (closing a read-write file does).
        Handle file(H5Fopen(path.c_str(), H5F_ACC_RDONLY, H5P_DEFAULT), H5Fclose);
        if (file.ok()) walk_file(file.get());  // a file that does not open: the in-process open reports it
      },
      kWalkTimeoutSeconds);
  // Fail closed: without the check a corrupt file could crash this process (or read garbage).
  ESA_CHECK(probe.end != ChildProbe::End::not_run, "{}: cannot check the HDF5 file in a child process first ({})",
            path, probe.describe(kWalkTimeoutSeconds));
  ESA_CHECK(probe.end != ChildProbe::End::crashed, "{}: corrupt HDF5 file: libhdf5 crashed reading its structure ({})",
            path, probe.describe(kWalkTimeoutSeconds));
  ESA_CHECK(probe.end != ChildProbe::End::timed_out, "{}: corrupt HDF5 file: libhdf5 did not finish reading its structure ({})",
            path, probe.describe(kWalkTimeoutSeconds));
}

// ---- file ---------------------------------------------------------------------------------------

H5File H5File::create(const std::string& path) {
  quiet_hdf5();
  const hid_t id = H5Fcreate(path.c_str(), H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
  ESA_CHECK(id >= 0, "{}: cannot create the HDF5 file (is the folder writable?)", path);
  return H5File(path, id);
}

H5File H5File::open(const std::string& path) {
  quiet_hdf5();
  ::close(open_regular_file(path));  // "no such file", or what it is instead of a file (never blocks)
  check_structure_in_child(path);
  const hid_t id = H5Fopen(path.c_str(), H5F_ACC_RDONLY, H5P_DEFAULT);
  ESA_CHECK(id >= 0, "{}: not a readable HDF5 file (truncated, corrupt or another format)", path);
  walk_file(id);
  return H5File(path, id);
}

H5File H5File::open_rw(const std::string& path) {
  quiet_hdf5();
  ::close(open_regular_file(path));  // "no such file", or what it is instead of a file (never blocks)
  check_structure_in_child(path);
  const hid_t id = H5Fopen(path.c_str(), H5F_ACC_RDWR, H5P_DEFAULT);
  ESA_CHECK(id >= 0, "{}: cannot open the HDF5 file for writing (truncated, corrupt, read-only or in use)", path);
  walk_file(id);
  return H5File(path, id);
}

H5File::H5File(H5File&& o) noexcept : path_(std::move(o.path_)), id_(std::exchange(o.id_, -1)) {}

H5File& H5File::operator=(H5File&& o) noexcept {
  if (this != &o) {
    if (id_ >= 0) H5Fclose(id_);
    path_ = std::move(o.path_);
    id_ = std::exchange(o.id_, -1);
  }
  return *this;
}

H5File::~H5File() {
  if (id_ >= 0) H5Fclose(id_);
}

void H5File::close() {
  if (id_ < 0) return;
  const herr_t flushed = H5Fflush(id_, H5F_SCOPE_LOCAL);
  const herr_t closed = H5Fclose(id_);
  id_ = -1;
  ESA_CHECK(flushed >= 0 && closed >= 0, "{}: writing the HDF5 file failed (disk full?)", path_);
}

void H5File::flush() {
  ESA_CHECK(H5Fflush(id_or_fail(), H5F_SCOPE_LOCAL) >= 0, "{}: flushing the HDF5 file failed (disk full?)", path_);
}

int64_t H5File::id_or_fail() const {
  ESA_CHECK(id_ >= 0, "{}: HDF5 file used after close", path_);
  return id_;
}

std::string H5File::where(const std::string& object) const { return path_ + ": " + object; }

bool H5File::exists(const std::string& object) const {
  const hid_t f = id_or_fail();
  if (object.empty() || object == "/") return true;
  // H5Lexists fails (rather than answering no) when a parent is missing: walk the path.
  std::string prefix;
  size_t pos = object[0] == '/' ? 1 : 0;
  while (pos <= object.size()) {
    const size_t next = std::min(object.find('/', pos), object.size());
    prefix = object.substr(0, next);
    if (H5Lexists(f, prefix.c_str(), H5P_DEFAULT) <= 0) return false;
    pos = next + 1;
  }
  return true;
}

void H5File::create_group(const std::string& group) {
  if (exists(group)) return;
  Handle lcpl = link_create_plist();
  Handle g(H5Gcreate2(id_or_fail(), group.c_str(), lcpl.get(), H5P_DEFAULT, H5P_DEFAULT), H5Gclose);
  ESA_CHECK(g.ok(), "{}: cannot create the group", where(group));
}

std::vector<std::string> H5File::members(const std::string& group) const {
  ESA_CHECK(exists(group), "{}: no such group", where(group));
  Handle g(H5Gopen2(id_or_fail(), group.c_str(), H5P_DEFAULT), H5Gclose);
  ESA_CHECK(g.ok(), "{}: not a group", where(group));
  H5G_info_t info;
  ESA_CHECK(H5Gget_info(g.get(), &info) >= 0, "{}: cannot list the group", where(group));
  std::vector<std::string> names;
  for (hsize_t i = 0; i < info.nlinks; ++i) {
    const ssize_t len = H5Lget_name_by_idx(g.get(), ".", H5_INDEX_NAME, H5_ITER_INC, i, nullptr, 0, H5P_DEFAULT);
    ESA_CHECK(len >= 0, "{}: cannot list the group", where(group));
    std::string name(size_t(len) + 1, '\0');
    H5Lget_name_by_idx(g.get(), ".", H5_INDEX_NAME, H5_ITER_INC, i, name.data(), name.size(), H5P_DEFAULT);
    name.resize(size_t(len));
    names.push_back(std::move(name));
  }
  std::sort(names.begin(), names.end());
  return names;
}

void H5File::ensure_parent(const std::string& object) {
  const size_t slash = object.rfind('/');
  if (slash != std::string::npos && slash > 0) create_group(object.substr(0, slash));
}

// ---- attributes ---------------------------------------------------------------------------------

void H5File::set_attr_raw(const std::string& object, const std::string& name, int64_t type, const void* data,
                          int64_t count) {
  ESA_CHECK(exists(object), "{}: no such object for attribute '{}'", where(object), name);
  Handle obj(H5Oopen(id_or_fail(), object.c_str(), H5P_DEFAULT), H5Oclose);
  ESA_CHECK(obj.ok(), "{}: cannot open the object for attribute '{}'", where(object), name);
  if (H5Aexists(obj.get(), name.c_str()) > 0) H5Adelete(obj.get(), name.c_str());
  Handle space;
  if (count < 0) {
    space = Handle(H5Screate(H5S_SCALAR), H5Sclose);
  } else {
    const hsize_t dims[1] = {hsize_t(count)};
    space = Handle(H5Screate_simple(1, dims, nullptr), H5Sclose);
  }
  Handle attr(H5Acreate2(obj.get(), name.c_str(), hid_t(type), space.get(), H5P_DEFAULT, H5P_DEFAULT), H5Aclose);
  ESA_CHECK(attr.ok() && H5Awrite(attr.get(), hid_t(type), data) >= 0, "{}: cannot write attribute '{}'",
            where(object), name);
}

void H5File::set_attr(const std::string& object, const std::string& name, const std::string& value) {
  Handle t = fixed_string_type(value.size());
  set_attr_raw(object, name, t.get(), value.c_str(), -1);  // c_str: one NUL byte for ""
}

void H5File::set_attr(const std::string& object, const std::string& name, int64_t value) {
  set_attr_raw(object, name, H5T_NATIVE_INT64, &value, -1);
}

void H5File::set_attr(const std::string& object, const std::string& name, double value) {
  set_attr_raw(object, name, H5T_NATIVE_DOUBLE, &value, -1);
}

void H5File::set_attr(const std::string& object, const std::string& name, std::span<const int64_t> values) {
  set_attr_raw(object, name, H5T_NATIVE_INT64, values.data(), int64_t(values.size()));
}

void H5File::set_attr(const std::string& object, const std::string& name, std::span<const double> values) {
  set_attr_raw(object, name, H5T_NATIVE_DOUBLE, values.data(), int64_t(values.size()));
}

bool H5File::has_attr(const std::string& object, const std::string& name) const {
  if (!exists(object)) return false;
  return H5Aexists_by_name(id_or_fail(), object.c_str(), name.c_str(), H5P_DEFAULT) > 0;
}

std::string H5File::attr_string(const std::string& object, const std::string& name) const {
  ESA_CHECK(has_attr(object, name), "{}: missing attribute '{}'", where(object), name);
  Handle attr(H5Aopen_by_name(id_or_fail(), object.c_str(), name.c_str(), H5P_DEFAULT, H5P_DEFAULT), H5Aclose);
  Handle type(H5Aget_type(attr.get()), H5Tclose);
  Handle space(H5Aget_space(attr.get()), H5Sclose);
  ESA_CHECK(H5Sget_simple_extent_npoints(space.get()) == 1, "{}: attribute '{}' is not a single string",
            where(object), name);
  const size_t size = checked_string_size(fmt::format("{}: attribute '{}'", where(object), name), type.get());
  std::string out(size, '\0');
  Handle mem = fixed_string_type(size);
  H5Tset_cset(mem.get(), H5Tget_cset(type.get()));  // HDF5 converts no ASCII <-> UTF-8; h5py writes ASCII
  ESA_CHECK(H5Aread(attr.get(), mem.get(), out.data()) >= 0, "{}: cannot read attribute '{}'", where(object), name);
  out.resize(std::min(out.find('\0'), out.size()));
  return out;
}

std::vector<double> H5File::attr_numbers(const std::string& object, const std::string& name) const {
  ESA_CHECK(has_attr(object, name), "{}: missing attribute '{}'", where(object), name);
  Handle attr(H5Aopen_by_name(id_or_fail(), object.c_str(), name.c_str(), H5P_DEFAULT, H5P_DEFAULT), H5Aclose);
  Handle type(H5Aget_type(attr.get()), H5Tclose);
  Handle space(H5Aget_space(attr.get()), H5Sclose);
  const H5T_class_t cls = type.ok() ? H5Tget_class(type.get()) : H5T_NO_CLASS;
  ESA_CHECK(cls == H5T_INTEGER || cls == H5T_FLOAT, "{}: attribute '{}' is not a number", where(object), name);
  ESA_CHECK(is_standard_number(type.get()), "{}: attribute '{}' has a non-standard number type", where(object), name);
  const hssize_t n = H5Sget_simple_extent_npoints(space.get());
  ESA_CHECK(n >= 0 && n < (hssize_t(1) << 24), "{}: attribute '{}' has a bad size", where(object), name);
  std::vector<double> out(static_cast<size_t>(n));
  ESA_CHECK(H5Aread(attr.get(), H5T_NATIVE_DOUBLE, out.data()) >= 0, "{}: cannot read attribute '{}'", where(object),
            name);
  return out;
}

int64_t H5File::attr_int(const std::string& object, const std::string& name) const {
  const auto v = attr_numbers(object, name);
  ESA_CHECK(v.size() == 1, "{}: attribute '{}' has {} values, expected one", where(object), name, v.size());
  ESA_CHECK(is_int64(v[0]), "{}: attribute '{}' = {} is not an integer", where(object), name, v[0]);
  return int64_t(v[0]);
}

double H5File::attr_double(const std::string& object, const std::string& name) const {
  const auto v = attr_numbers(object, name);
  ESA_CHECK(v.size() == 1, "{}: attribute '{}' has {} values, expected one", where(object), name, v.size());
  return v[0];
}

std::vector<int64_t> H5File::attr_ints(const std::string& object, const std::string& name) const {
  std::vector<int64_t> out;
  for (double x : attr_numbers(object, name)) {
    ESA_CHECK(is_int64(x), "{}: attribute '{}' holds {}, not an integer", where(object), name, x);
    out.push_back(int64_t(x));
  }
  return out;
}

std::vector<double> H5File::attr_doubles(const std::string& object, const std::string& name) const {
  return attr_numbers(object, name);
}

// ---- datasets -----------------------------------------------------------------------------------

void H5File::write_raw(const std::string& dataset, const void* data, int64_t mem_type, int64_t file_type,
                       const std::vector<int64_t>& shape, size_t n) {
  ESA_CHECK(element_count(shape) == n, "{}: {} values for shape of {} elements", where(dataset), n,
            element_count(shape));
  ESA_CHECK(!exists(dataset), "{}: dataset exists already", where(dataset));
  const auto dims = to_hsize(shape);
  Handle space(H5Screate_simple(int(dims.size()), dims.data(), nullptr), H5Sclose);
  Handle lcpl = link_create_plist();
  Handle ds(H5Dcreate2(id_or_fail(), dataset.c_str(), hid_t(file_type), space.get(), lcpl.get(), H5P_DEFAULT,
                       H5P_DEFAULT),
            H5Dclose);
  ESA_CHECK(ds.ok(), "{}: cannot create the dataset", where(dataset));
  if (n > 0) {
    ESA_CHECK(H5Dwrite(ds.get(), hid_t(mem_type), H5S_ALL, H5S_ALL, H5P_DEFAULT, data) >= 0,
              "{}: writing the dataset failed (disk full?)", where(dataset));
  }
}

void H5File::write(const std::string& dataset, std::span<const float> data, const std::vector<int64_t>& shape,
                   H5Float type) {
  if (type == H5Float::f32) {
    write_raw(dataset, data.data(), H5T_NATIVE_FLOAT, H5T_IEEE_F32LE, shape, data.size());
    return;
  }
  std::vector<uint16_t> half(data.size());
  for (size_t i = 0; i < data.size(); ++i) half[i] = float_to_fp16(data[i]);
  write_raw(dataset, half.data(), half_type(), half_type(), shape, half.size());
}

void H5File::write(const std::string& dataset, std::span<const double> data, const std::vector<int64_t>& shape) {
  write_raw(dataset, data.data(), H5T_NATIVE_DOUBLE, H5T_IEEE_F64LE, shape, data.size());
}

void H5File::write(const std::string& dataset, std::span<const int64_t> data, const std::vector<int64_t>& shape) {
  write_raw(dataset, data.data(), H5T_NATIVE_INT64, H5T_STD_I64LE, shape, data.size());
}

void H5File::write(const std::string& dataset, std::span<const int32_t> data, const std::vector<int64_t>& shape) {
  write_raw(dataset, data.data(), H5T_NATIVE_INT32, H5T_STD_I32LE, shape, data.size());
}

void H5File::write(const std::string& dataset, const std::vector<std::string>& data) {
  size_t size = 1;
  for (const auto& s : data) size = std::max(size, s.size());
  std::vector<char> packed(data.size() * size, '\0');
  for (size_t i = 0; i < data.size(); ++i) std::copy(data[i].begin(), data[i].end(), packed.begin() + i * size);
  Handle t = fixed_string_type(size);
  write_raw(dataset, packed.data(), t.get(), t.get(), {int64_t(data.size())}, data.size());
}

std::vector<int64_t> H5File::shape(const std::string& dataset) const {
  ESA_CHECK(exists(dataset), "{}: missing dataset", where(dataset));
  Handle ds(H5Dopen2(id_or_fail(), dataset.c_str(), H5P_DEFAULT), H5Dclose);
  ESA_CHECK(ds.ok(), "{}: not a dataset", where(dataset));
  Handle space(H5Dget_space(ds.get()), H5Sclose);
  const int rank = H5Sget_simple_extent_ndims(space.get());
  ESA_CHECK(rank >= 0 && rank <= 8, "{}: bad dataspace", where(dataset));
  std::vector<hsize_t> dims(static_cast<size_t>(rank));
  H5Sget_simple_extent_dims(space.get(), dims.data(), nullptr);
  std::vector<int64_t> out;
  for (hsize_t d : dims) out.push_back(int64_t(d));
  return out;
}

void H5File::read_raw(const std::string& dataset, int64_t mem_type, void* out, size_t n, int64_t row0,
                      int64_t rows) const {
  Handle ds(H5Dopen2(id_or_fail(), dataset.c_str(), H5P_DEFAULT), H5Dclose);
  ESA_CHECK(ds.ok(), "{}: missing dataset", where(dataset));
  {
    // Numbers only: converting any other type (variable-length data above all) reaches libhdf5
    // code that is not safe on a corrupt file.
    Handle t(H5Dget_type(ds.get()), H5Tclose);
    const H5T_class_t cls = t.ok() ? H5Tget_class(t.get()) : H5T_NO_CLASS;
    ESA_CHECK(cls == H5T_INTEGER || cls == H5T_FLOAT, "{}: not a numeric dataset", where(dataset));
    ESA_CHECK(is_standard_number(t.get()), "{}: a non-standard number type", where(dataset));
  }
  if (n == 0) return;
  check_chunk_memory(ds.get(), where(dataset));
  herr_t status;
  if (row0 < 0) {
    status = H5Dread(ds.get(), hid_t(mem_type), H5S_ALL, H5S_ALL, H5P_DEFAULT, out);
  } else {
    Handle file_space(H5Dget_space(ds.get()), H5Sclose);
    const int rank = H5Sget_simple_extent_ndims(file_space.get());
    std::vector<hsize_t> dims(size_t(std::max(rank, 1)));
    H5Sget_simple_extent_dims(file_space.get(), dims.data(), nullptr);
    std::vector<hsize_t> start(dims.size(), 0), count = dims;
    start[0] = hsize_t(row0);
    count[0] = hsize_t(rows);
    H5Sselect_hyperslab(file_space.get(), H5S_SELECT_SET, start.data(), nullptr, count.data(), nullptr);
    // A memory space of the selection's own shape: HDF5 then copies whole chunks (a flat 1-d
    // memory space sends it down a per-element path, 5x slower).
    Handle mem_space(H5Screate_simple(int(count.size()), count.data(), nullptr), H5Sclose);
    status = H5Dread(ds.get(), hid_t(mem_type), mem_space.get(), file_space.get(), H5P_DEFAULT, out);
  }
  ESA_CHECK(status >= 0, "{}: reading the dataset failed (truncated or corrupt file, or not numeric)", where(dataset));
}

namespace {

// Whether a dataset's file type is a 2-byte float (read bit for bit, converted by esa).
bool is_half(hid_t file, const std::string& dataset) {
  Handle ds(H5Dopen2(file, dataset.c_str(), H5P_DEFAULT), H5Dclose);
  if (!ds.ok()) return false;
  Handle t(H5Dget_type(ds.get()), H5Tclose);
  return t.ok() && H5Tget_class(t.get()) == H5T_FLOAT && H5Tget_size(t.get()) == 2;
}

}  // namespace

std::vector<float> H5File::read_float_rows(const std::string& dataset, int64_t row0, int64_t rows) const {
  const std::vector<int64_t> dims = shape(dataset);
  ESA_CHECK(!dims.empty(), "{}: scalar dataset, expected rows", where(dataset));
  ESA_CHECK(row0 >= 0 && rows >= 0 && row0 + rows <= dims[0], "{}: rows [{}, {}) outside its {} rows", where(dataset),
            row0, row0 + rows, dims[0]);
  std::vector<int64_t> read_shape = dims;
  read_shape[0] = rows;
  const size_t n = checked_read_count(where(dataset), read_shape, sizeof(float));
  std::vector<float> out(n);
  if (is_half(id_or_fail(), dataset)) {
    std::vector<uint16_t> half(n);
    read_raw(dataset, half_type(), half.data(), n, row0, rows);
    for (size_t i = 0; i < n; ++i) out[i] = fp16_to_float(half[i]);
  } else {
    read_raw(dataset, H5T_NATIVE_FLOAT, out.data(), n, row0, rows);
  }
  return out;
}

std::vector<float> H5File::read_floats(const std::string& dataset) const {
  const std::vector<int64_t> dims = shape(dataset);
  if (dims.empty()) {
    std::vector<float> out(1);
    read_raw(dataset, H5T_NATIVE_FLOAT, out.data(), 1);
    return out;
  }
  return read_float_rows(dataset, 0, dims[0]);
}

std::vector<double> H5File::read_doubles(const std::string& dataset) const {
  std::vector<double> out(checked_read_count(where(dataset), shape(dataset), sizeof(double)));
  read_raw(dataset, H5T_NATIVE_DOUBLE, out.data(), out.size());
  return out;
}

std::vector<int64_t> H5File::read_ints(const std::string& dataset) const {
  std::vector<int64_t> out(checked_read_count(where(dataset), shape(dataset), sizeof(int64_t)));
  {
    Handle ds(H5Dopen2(id_or_fail(), dataset.c_str(), H5P_DEFAULT), H5Dclose);
    Handle t(H5Dget_type(ds.get()), H5Tclose);
    ESA_CHECK(t.ok() && H5Tget_class(t.get()) == H5T_INTEGER, "{}: not an integer dataset", where(dataset));
  }
  read_raw(dataset, H5T_NATIVE_INT64, out.data(), out.size());
  return out;
}

std::vector<std::string> H5File::read_strings(const std::string& dataset) const {
  const std::vector<int64_t> dims = shape(dataset);
  Handle ds(H5Dopen2(id_or_fail(), dataset.c_str(), H5P_DEFAULT), H5Dclose);
  Handle t(H5Dget_type(ds.get()), H5Tclose);
  const size_t size = checked_string_size(where(dataset), t.get());
  const size_t n = checked_read_count(where(dataset), dims, size);
  std::vector<char> packed(n * size);
  Handle mem = fixed_string_type(size);
  H5Tset_cset(mem.get(), H5Tget_cset(t.get()));
  if (n > 0) {
    ESA_CHECK(H5Dread(ds.get(), mem.get(), H5S_ALL, H5S_ALL, H5P_DEFAULT, packed.data()) >= 0,
              "{}: reading the dataset failed (truncated or corrupt file)", where(dataset));
  }
  // NUL padding ends a string; a NUL inside one is kept (generated text may contain byte 0).
  std::vector<std::string> out;
  for (size_t i = 0; i < n; ++i) {
    const char* p = packed.data() + i * size;
    size_t len = size;
    while (len > 0 && p[len - 1] == '\0') --len;
    out.emplace_back(p, len);
  }
  return out;
}

// ---- appender -----------------------------------------------------------------------------------

H5File::Appender::Appender(H5File& file, const std::string& dataset, const std::vector<int64_t>& row_shape,
                           H5Float type, int64_t chunk_rows, int deflate)
    : file_(&file), name_(dataset), row_shape_(row_shape), type_(type) {
  ESA_CHECK(chunk_rows >= 1, "{}: chunk of {} rows", file.where(dataset), chunk_rows);
  for (int64_t d : row_shape) row_size_ *= d;
  ESA_CHECK(!file.exists(dataset), "{}: dataset exists already", file.where(dataset));
  std::vector<hsize_t> dims{0}, max_dims{H5S_UNLIMITED}, chunk{hsize_t(chunk_rows)};
  for (int64_t d : row_shape) {
    dims.push_back(hsize_t(d));
    max_dims.push_back(hsize_t(d));
    chunk.push_back(hsize_t(d));
  }
  Handle space(H5Screate_simple(int(dims.size()), dims.data(), max_dims.data()), H5Sclose);
  Handle dcpl(H5Pcreate(H5P_DATASET_CREATE), H5Pclose);
  H5Pset_chunk(dcpl.get(), int(chunk.size()), chunk.data());
  if (deflate > 0) {
    H5Pset_shuffle(dcpl.get());
    H5Pset_deflate(dcpl.get(), unsigned(deflate));
  }
  Handle lcpl = link_create_plist();
  const hid_t file_type = type == H5Float::f16 ? half_type() : H5T_IEEE_F32LE;
  Handle ds(H5Dcreate2(file.id_or_fail(), dataset.c_str(), file_type, space.get(), lcpl.get(), dcpl.get(),
                       H5P_DEFAULT),
            H5Dclose);
  ESA_CHECK(ds.ok(), "{}: cannot create the dataset", file.where(dataset));
}

void H5File::Appender::append(const float* rows, int64_t n) {
  if (n <= 0) return;
  Handle ds(H5Dopen2(file_->id_or_fail(), name_.c_str(), H5P_DEFAULT), H5Dclose);
  ESA_CHECK(ds.ok(), "{}: dataset disappeared", file_->where(name_));
  std::vector<hsize_t> dims{hsize_t(rows_ + n)}, start{hsize_t(rows_)}, count{hsize_t(n)};
  for (int64_t d : row_shape_) {
    dims.push_back(hsize_t(d));
    start.push_back(0);
    count.push_back(hsize_t(d));
  }
  ESA_CHECK(H5Dset_extent(ds.get(), dims.data()) >= 0, "{}: cannot extend the dataset", file_->where(name_));
  Handle file_space(H5Dget_space(ds.get()), H5Sclose);
  H5Sselect_hyperslab(file_space.get(), H5S_SELECT_SET, start.data(), nullptr, count.data(), nullptr);
  Handle mem_space(H5Screate_simple(int(count.size()), count.data(), nullptr), H5Sclose);
  herr_t status;
  if (type_ == H5Float::f16) {
    half_.resize(size_t(n * row_size_));
    for (size_t i = 0; i < half_.size(); ++i) half_[i] = float_to_fp16(rows[i]);
    status = H5Dwrite(ds.get(), half_type(), mem_space.get(), file_space.get(), H5P_DEFAULT, half_.data());
  } else {
    status = H5Dwrite(ds.get(), H5T_NATIVE_FLOAT, mem_space.get(), file_space.get(), H5P_DEFAULT, rows);
  }
  ESA_CHECK(status >= 0, "{}: writing rows failed (disk full?)", file_->where(name_));
  rows_ += n;
}

}  // namespace esa::io
