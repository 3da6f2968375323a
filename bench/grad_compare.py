#!/usr/bin/env python3
"""grad_compare.py: compare two folders of `mtatune grad` outputs.

usage: grad_compare.py REF_DIR OUT_DIR MAX_REL_L2

For each .npy file in REF_DIR (float32, little-endian, C order, as `mtatune
grad` writes them), the same file in OUT_DIR must exist with the same shape;
prints each file's relative L2 error ||o - r|| / ||r|| and whether any
element is NaN, then one JSON line {"files": N, "worst": X, "ok": B}. Exit 0
when every file is present, NaN-free and within MAX_REL_L2, else 1.

Pure Python (no NumPy), so that the prepared GPU run's rehearsal needs
nothing installed.
"""
import array
import ast
import json
import math
import os
import struct
import sys


def read_f32(path):
    with open(path, "rb") as f:
        data = f.read()
    if data[:6] != b"\x93NUMPY":
        raise ValueError("%s: not a .npy file" % path)
    major = data[6]
    if major == 1:
        hlen = struct.unpack("<H", data[8:10])[0]
        start = 10
    else:
        hlen = struct.unpack("<I", data[8:12])[0]
        start = 12
    header = ast.literal_eval(data[start:start + hlen].decode("latin1"))
    if header.get("descr") != "<f4" or header.get("fortran_order"):
        raise ValueError("%s: expected little-endian float32 in C order, got %r" % (path, header))
    vals = array.array("f")
    vals.frombytes(data[start + hlen:])
    if sys.byteorder != "little":
        vals.byteswap()
    return tuple(header["shape"]), vals


def main(argv):
    if len(argv) != 4:
        print(__doc__.strip().splitlines()[2], file=sys.stderr)
        return 2
    ref_dir, out_dir, limit = argv[1], argv[2], float(argv[3])
    names = sorted(n for n in os.listdir(ref_dir) if n.endswith(".npy"))
    worst, ok = 0.0, bool(names)
    for n in names:
        try:
            rs, r = read_f32(os.path.join(ref_dir, n))
            os_, o = read_f32(os.path.join(out_dir, n))
        except (OSError, ValueError) as e:
            print("%s: %s" % (n, e))
            ok = False
            continue
        if rs != os_ or len(r) != len(o):
            print("%s: shape %r, expected %r" % (n, os_, rs))
            ok = False
            continue
        num = den = 0.0
        nan = False
        for a, b in zip(o, r):
            if a != a:
                nan = True
            num += (a - b) * (a - b)
            den += b * b
        rel = math.sqrt(num / den) if den > 0 else math.sqrt(num)
        worst = max(worst, rel) if not nan else float("inf")
        good = not nan and rel <= limit
        ok = ok and good
        print("%-26s rel L2 %.3g%s %s" % (n, rel, " NaN" if nan else "", "ok" if good else "FAIL"))
    print(json.dumps({"files": len(names), "worst": worst if worst != float("inf") else None,
                      "ok": ok}))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv))
