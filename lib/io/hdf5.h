// A small HDF5 layer for esa's result files (qk.h5, proj.h5, results.h5, sweep.h5): groups,
// float/int datasets (whole, by rows, or appended row by row), and scalar or array attributes.
// Every failure is an esa::Error that names the file and the object ("qk.h5: /layer_03/k: ..."),
// HDF5's own error printing is switched off. Strings are fixed-length, NUL-padded UTF-8 (h5py
// reads them as bytes: `.decode()`, or `.asstr()` for datasets); variable-length strings are
// refused on read (libhdf5's reader of them is not safe on corrupt files; scripts/h5_upgrade.py
// converts files written before). fp16 datasets use the IEEE binary16 layout that h5py maps to numpy float16.
//
// Not thread-safe (Debian's HDF5 is the serial build): call from one thread at a time.
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <vector>

namespace esa::io {

/// Element type of a float dataset on disk.
enum class H5Float { f16, f32 };

class H5File {
 public:
  /// A new file at `path` (an existing one is truncated). Write to a temporary path and rename
  /// (core/atomic_output.h) so that no half-written file is ever seen under the final name.
  static H5File create(const std::string& path);
  /// An existing file, read-only; "<path>: not a readable HDF5 file" when it is not one
  /// (missing, truncated, corrupt).
  static H5File open(const std::string& path);
  /// An existing file, read-write (appending to results).
  static H5File open_rw(const std::string& path);

  H5File(H5File&& other) noexcept;
  H5File& operator=(H5File&& other) noexcept;
  H5File(const H5File&) = delete;
  H5File& operator=(const H5File&) = delete;
  ~H5File();

  const std::string& path() const { return path_; }
  /// Flushes and closes; throws when HDF5 reports a write failure (a full disk). Idempotent.
  void close();
  void flush();

  /// Whether a group or dataset exists at an absolute path like "/layer_03/k".
  bool exists(const std::string& object) const;
  /// Creates a group (and missing parents).
  void create_group(const std::string& group);
  /// Names of the members of a group, sorted.
  std::vector<std::string> members(const std::string& group) const;

  // Attributes of a group or dataset ("/" is the file). Setting replaces an existing one.
  void set_attr(const std::string& object, const std::string& name, const std::string& value);
  void set_attr(const std::string& object, const std::string& name, const char* value) {
    set_attr(object, name, std::string(value));
  }
  void set_attr(const std::string& object, const std::string& name, int64_t value);
  void set_attr(const std::string& object, const std::string& name, double value);
  void set_attr(const std::string& object, const std::string& name, std::span<const int64_t> values);
  void set_attr(const std::string& object, const std::string& name, std::span<const double> values);
  bool has_attr(const std::string& object, const std::string& name) const;
  std::string attr_string(const std::string& object, const std::string& name) const;
  int64_t attr_int(const std::string& object, const std::string& name) const;
  double attr_double(const std::string& object, const std::string& name) const;
  std::vector<int64_t> attr_ints(const std::string& object, const std::string& name) const;
  std::vector<double> attr_doubles(const std::string& object, const std::string& name) const;

  // Whole datasets. Parent groups are created as needed.
  void write(const std::string& dataset, std::span<const float> data, const std::vector<int64_t>& shape,
             H5Float type = H5Float::f32);
  void write(const std::string& dataset, std::span<const double> data, const std::vector<int64_t>& shape);
  void write(const std::string& dataset, std::span<const int64_t> data, const std::vector<int64_t>& shape);
  void write(const std::string& dataset, std::span<const int32_t> data, const std::vector<int64_t>& shape);
  /// A 1-d dataset of fixed-length UTF-8 strings (the longest one's size, NUL-padded).
  void write(const std::string& dataset, const std::vector<std::string>& data);

  std::vector<int64_t> shape(const std::string& dataset) const;
  /// Any float (fp16/32/64) or integer dataset, converted to float.
  std::vector<float> read_floats(const std::string& dataset) const;
  /// Rows [row0, row0 + rows) along the first dimension, converted to float.
  std::vector<float> read_float_rows(const std::string& dataset, int64_t row0, int64_t rows) const;
  std::vector<double> read_doubles(const std::string& dataset) const;
  /// Any integer dataset, converted to int64.
  std::vector<int64_t> read_ints(const std::string& dataset) const;
  std::vector<std::string> read_strings(const std::string& dataset) const;

  /// A dataset grown along its first dimension: shape [rows, row_shape...], chunked by
  /// `chunk_rows` rows and compressed (shuffle + deflate level `deflate`, 0 = none).
  class Appender {
   public:
    Appender(H5File& file, const std::string& dataset, const std::vector<int64_t>& row_shape, H5Float type,
             int64_t chunk_rows, int deflate);
    /// Appends n rows (n * row_size floats).
    void append(const float* rows, int64_t n);
    int64_t rows() const { return rows_; }
    int64_t row_size() const { return row_size_; }

   private:
    H5File* file_;
    std::string name_;
    std::vector<int64_t> row_shape_;
    H5Float type_;
    int64_t row_size_ = 1, rows_ = 0;
    std::vector<uint16_t> half_;
  };

 private:
  H5File(std::string path, int64_t id) : path_(std::move(path)), id_(id) {}
  int64_t id_or_fail() const;
  std::string where(const std::string& object) const;
  void ensure_parent(const std::string& object);
  void write_raw(const std::string& dataset, const void* data, int64_t mem_type, int64_t file_type,
                 const std::vector<int64_t>& shape, size_t n);
  void read_raw(const std::string& dataset, int64_t mem_type, void* out, size_t n, int64_t row0 = -1,
                int64_t rows = -1) const;
  void set_attr_raw(const std::string& object, const std::string& name, int64_t type, const void* data,
                    int64_t count);
  std::vector<double> attr_numbers(const std::string& object, const std::string& name) const;

  std::string path_;
  int64_t id_ = -1;  // hid_t
};

}  // namespace esa::io
