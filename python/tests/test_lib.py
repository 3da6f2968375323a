"""test_lib.py: finding the library, the ctypes view of runtime/mta.h."""
import os
import shutil
import subprocess

import mtatune
from mtatune import _lib
from util import REPO, Skip, require, test


@test
def test_library_found():
    path = mtatune.loaded_path()
    require(os.path.isfile(path), f"loaded from {path}, which is not a file")
    # The installed package carries its own copy; the source folder uses lib/.
    pkg_copy = os.path.join(os.path.dirname(_lib.__file__), "lib", "libmtatune.so")
    repo_lib = os.path.join(REPO, "lib", "libmtatune.so")
    expect = os.environ.get("MTATUNE_LIB") or (pkg_copy if os.path.isfile(pkg_copy) else repo_lib)
    require(os.path.samefile(path, expect), f"loaded {path}, expected {expect}")


@test
def test_library_env_var():
    old = os.environ.get("MTATUNE_LIB")
    try:
        os.environ["MTATUNE_LIB"] = os.path.join(os.environ["MT_TMP"], "missing.so")
        try:
            _lib.library_path()
        except _lib.MTAError as e:
            require("MTATUNE_LIB" in str(e) and "missing.so" in str(e),
                    f"message does not name the variable and the file: {e}")
        else:
            raise AssertionError("a missing $MTATUNE_LIB was accepted")
        os.environ["MTATUNE_LIB"] = os.path.join(REPO, "lib", "libmtatune.so")
        require(_lib.library_path() == os.environ["MTATUNE_LIB"], "$MTATUNE_LIB not used")
    finally:
        if old is None:
            os.environ.pop("MTATUNE_LIB", None)
        else:
            os.environ["MTATUNE_LIB"] = old


# Every field of the structs the package builds, as the C compiler lays them out.
_LAYOUT_C = r"""
#include "runtime/mta.h"
#include <stddef.h>
#include <stdio.h>
#define F(s, f) printf("%s.%s %zu\n", #s, #f, offsetof(struct s, f));
int main(void)
{
	printf("mta_problem %zu\nmta_tensor %zu\nmta_weights %zu\n",
	       sizeof(struct mta_problem), sizeof(struct mta_tensor), sizeof(struct mta_weights));
	F(mta_problem, H) F(mta_problem, Hkv) F(mta_problem, D) F(mta_problem, cq)
	F(mta_problem, ck) F(mta_problem, head_pre) F(mta_problem, cq2) F(mta_problem, ck2)
	F(mta_problem, head_post) F(mta_problem, hc) F(mta_problem, pad) F(mta_problem, gn)
	F(mta_problem, gn_rescale) F(mta_problem, gate) F(mta_problem, scale)
	F(mta_problem, dtype)
	F(mta_tensor, data) F(mta_tensor, dtype) F(mta_tensor, shape) F(mta_tensor, stride)
	F(mta_tensor, memory)
	F(mta_weights, kq_pre) F(mta_weights, head_pre) F(mta_weights, kq_post)
	F(mta_weights, head_post) F(mta_weights, head_post_linear) F(mta_weights, gn_weight)
	F(mta_weights, gate_w) F(mta_weights, gate_b) F(mta_weights, layer_id)
	F(mta_weights, gate_b_ptr)
	printf("mta_pick %zu\nmta_stats %zu\n", sizeof(struct mta_pick), sizeof(struct mta_stats));
	F(mta_pick, spec) F(mta_pick, source) F(mta_pick, rung) F(mta_pick, t_bucket)
	F(mta_pick, b_bucket) F(mta_pick, speedup) F(mta_pick, ci_low) F(mta_pick, ci_high)
	F(mta_pick, rounds) F(mta_pick, significant)
	F(mta_stats, calls) F(mta_stats, device_allocs) F(mta_stats, host_allocs)
	F(mta_stats, kernel_loads) F(mta_stats, syncs)
	printf("MTA_KEY_MAX %d\nMTA_SPEC_MAX %d\nMTA_MAX_HEADS %d\nMTA_MAX_HEAD_DIM %d\n"
	       "MTA_MAX_KERNEL %d\nMTA_HPOST_CONV %d\nMTA_HPOST_LINEAR %d\nMTA_PAD_LEFT %d\n"
	       "MTA_PAD_RIGHT %d\nMTA_BF16 %d\nMTA_F16 %d\nMTA_ESHAPE %d\n",
	       MTA_KEY_MAX, MTA_SPEC_MAX, MTA_MAX_HEADS, MTA_MAX_HEAD_DIM, MTA_MAX_KERNEL,
	       MTA_HPOST_CONV, MTA_HPOST_LINEAR, MTA_PAD_LEFT, MTA_PAD_RIGHT, MTA_BF16, MTA_F16,
	       MTA_ESHAPE);
	return 0;
}
"""


@test
def test_ctypes_layout_matches_header():
    """Compile a program against runtime/mta.h and compare every size,
    offset and constant with mtatune._lib: a change of the header that the
    package has not followed fails here, not in a kernel."""
    cc = os.environ.get("CC") or shutil.which("cc") or shutil.which("gcc")
    if not cc:
        raise Skip("no C compiler")
    tmp = os.environ["MT_TMP"]
    src, exe = os.path.join(tmp, "layout.c"), os.path.join(tmp, "layout")
    with open(src, "w") as f:
        f.write(_LAYOUT_C)
    subprocess.run([cc, "-I", REPO, "-o", exe, src], check=True)
    out = subprocess.run([exe], check=True, capture_output=True, text=True).stdout
    c = dict((k, int(v)) for k, v in (line.split() for line in out.splitlines()))
    py = {"mta_problem": _lib.ctypes.sizeof(_lib.Problem),
          "mta_tensor": _lib.ctypes.sizeof(_lib.Tensor),
          "mta_weights": _lib.ctypes.sizeof(_lib.Weights),
          "mta_pick": _lib.ctypes.sizeof(_lib.Pick), "mta_stats": _lib.ctypes.sizeof(_lib.Stats)}
    for sname, cls in (("mta_problem", _lib.Problem), ("mta_tensor", _lib.Tensor),
                       ("mta_weights", _lib.Weights), ("mta_pick", _lib.Pick),
                       ("mta_stats", _lib.Stats)):
        names = [f[0] for f in cls._fields_]
        cnames = [k.split(".", 1)[1] for k in c if k.startswith(sname + ".")]
        require(names == cnames, f"struct {sname}: ctypes fields {names}, header {cnames}")
        for n in names:
            py[f"{sname}.{n}"] = getattr(cls, n).offset
    for k in ("MTA_KEY_MAX", "MTA_SPEC_MAX", "MTA_MAX_HEADS", "MTA_MAX_HEAD_DIM",
              "MTA_MAX_KERNEL", "MTA_HPOST_CONV", "MTA_HPOST_LINEAR", "MTA_BF16", "MTA_F16",
              "MTA_ESHAPE"):
        py[k] = getattr(_lib, k)
    py["MTA_PAD_LEFT"], py["MTA_PAD_RIGHT"] = _lib.PADS["left"], _lib.PADS["right"]
    diff = {k: (py.get(k), c[k]) for k in c if py.get(k) != c[k]}
    require(not diff, f"ctypes (left) and runtime/mta.h (right) differ: {diff}")


@test
def test_tolerances_from_library():
    # The tests' bounds come from the library; check they are sane (a zero or
    # inverted bound would make every comparison fail or pass).
    f32, bf16, f16 = (_lib.tolerance(d) for d in (_lib.MTA_F32, _lib.MTA_BF16, _lib.MTA_F16))
    for t in (f32, bf16, f16):
        require(all(0 < x < 0.1 for x in t), f"bounds {t}")
    require(f32[0] < bf16[0] and bf16 == f16, f"f32 {f32}, bf16 {bf16}, f16 {f16}")


@test
def test_attention_counts_no_allocation_per_call():
    """mta_attention through the package's ctypes view, on a cpu context:
    after the first call nothing is allocated and nothing synchronises
    (the property a CUDA graph capture needs, counted by the library)."""
    import torch
    import mtatune.torch as mt
    from util import gen
    g = gen("stats")
    q, k, v = (torch.randn(1, 9, h, 8, generator=g) for h in (2, 2, 2))
    w = {"gn_weight": torch.rand(8, generator=g) + 0.5}
    o = mt.mta_attention(q, k, v, **w)
    ctx = _lib.context("cpu", 0, None)
    a = _lib.stats(ctx)
    for _ in range(5):
        o2 = mt.mta_attention(q, k, v, **w)
    b = _lib.stats(ctx)
    require(b["calls"] == a["calls"] + 5, f"calls {a} -> {b}")
    for n in ("device_allocs", "host_allocs", "kernel_loads", "syncs"):
        require(a[n] == b[n], f"{n} grew over 5 calls: {a} -> {b}")
    require(torch.equal(o, o2), "the same call gave another output")


@test
def test_pick_says_the_default_without_winners():
    """mta_context_pick through ctypes (struct mta_pick's layout): the tests'
    database is empty, so the pick is the cpu backend's default variant."""
    p = _lib.Problem()
    _lib.lib().mta_problem_init(_lib.ctypes.byref(p), 4, 2, 16)
    spec, source = _lib.context("cpu", 0, None).pick(p, 2, 100)
    require(spec.startswith("cpu:") and source == 0, f"pick {spec!r}, source {source}")
