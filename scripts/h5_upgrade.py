#!/usr/bin/env python3
"""Converts HDF5 files written by esa before 2026-11-26 to the current layout, in place: their
variable-length string attributes and datasets become fixed-length UTF-8, which esa reads (it
refuses variable-length strings: libhdf5's reader of them crashes on corrupt files).
Usage: scripts/h5_upgrade.py FILE.h5 [FILE.h5 ...]"""
import os
import shutil
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import esa_h5  # noqa: E402


def main(paths):
    if not paths:
        sys.exit(__doc__)
    for path in paths:
        # Convert a copy and rename it over the original: an interrupted upgrade loses nothing.
        fd, tmp = tempfile.mkstemp(prefix=os.path.basename(path) + ".", suffix=".tmp", dir=os.path.dirname(path) or ".")
        os.close(fd)
        try:
            shutil.copy2(path, tmp)  # contents and permissions
            n = esa_h5.upgrade(tmp)
            os.replace(tmp, path)
        except OSError as e:
            os.unlink(tmp)
            sys.exit(f"h5_upgrade.py: {path}: {e}")
        print(f"{path}: {n} string objects converted")


if __name__ == "__main__":
    main(sys.argv[1:])
