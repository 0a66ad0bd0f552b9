"""Reading and writing esa's HDF5 files from Python (h5py).

esa stores strings as fixed-length, NUL-padded UTF-8 (never variable-length: libhdf5's reader of
those is not safe on corrupt files), which h5py returns as bytes. `attrs(obj)` gives an object's
attributes with strings decoded; `set_text(obj, name, value)` writes a string attribute the way
esa does; `upgrade(path)` converts a file written by esa before 2026-11-26 (variable-length
strings) in place."""
import h5py
import numpy as np


def text(value):
    """A bytes attribute value as str; anything else unchanged."""
    if isinstance(value, (bytes, np.bytes_)):
        return value.decode("utf-8", errors="replace").rstrip("\0")
    return value


def attrs(obj):
    """An object's attributes as a dict, strings decoded."""
    return {k: text(v) for k, v in obj.attrs.items()}


def fixed_string_type(size):
    tid = h5py.h5t.C_S1.copy()
    tid.set_size(max(size, 1))
    tid.set_strpad(h5py.h5t.STR_NULLPAD)
    tid.set_cset(h5py.h5t.CSET_UTF8)
    return h5py.Datatype(tid)


def set_text(obj, name, value):
    """A string attribute as esa writes it (fixed-length UTF-8)."""
    data = str(value).encode("utf-8")
    obj.attrs.create(name, np.array(data, dtype=f"S{max(len(data), 1)}"), dtype=fixed_string_type(len(data)))


def upgrade(path):
    """Rewrites every variable-length string attribute and 1-d dataset of a file as fixed-length
    strings, in place. Returns how many objects changed."""
    changed = 0
    with h5py.File(path, "r+") as f:
        objects = [f]
        f.visititems(lambda _, o: objects.append(o))
        datasets = [o for o in objects if isinstance(o, h5py.Dataset) and h5py.check_string_dtype(o.dtype)
                    and h5py.check_string_dtype(o.dtype).length is None]
        for o in objects:
            for k in list(o.attrs.keys()):
                if isinstance(o.attrs[k], str):
                    set_text(o, k, o.attrs[k])
                    changed += 1
        for d in datasets:
            values = [s.encode("utf-8") for s in d.asstr()[:]]
            size = max([len(v) for v in values] + [1])
            parent, name = d.parent, d.name.rsplit("/", 1)[1]
            saved = attrs(d)
            del parent[name]
            ftype = fixed_string_type(size)
            new = parent.create_dataset(name, shape=(len(values),), dtype=ftype)
            if values:  # written in the file's own type: HDF5 has no ASCII -> UTF-8 conversion
                new.id.write(h5py.h5s.ALL, h5py.h5s.ALL, np.array(values, dtype=f"S{size}"), mtype=ftype.id)
            for k, v in saved.items():
                if isinstance(v, str):
                    set_text(new, k, v)
                else:
                    new.attrs[k] = v
            changed += 1
    return changed
