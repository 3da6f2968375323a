"""util.py: what the Python tests share: registration, seeds, random
inputs, the comparison with the project's tolerances, golden cases.

A test is a function decorated with @test; it fails by raising (an
AssertionError from check() or require(), or anything else) and may raise
Skip, which the runner reports and counts neither as passed nor failed.
"""
import ast
import math
import os
import struct
import zlib

import torch

from mtatune import _lib

REPO = os.path.normpath(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))
TESTS = []

DTYPE_CODE = {torch.float32: _lib.MTA_F32, torch.bfloat16: _lib.MTA_BF16,
              torch.float16: _lib.MTA_F16}


class Skip(Exception):
    """The test cannot run here (e.g. no golden cases): not counted as passed."""


def test(fn):
    TESTS.append((fn.__module__.replace("test_", "") + "." + fn.__name__[len("test_"):]
                  if fn.__name__.startswith("test_") else fn.__name__, fn))
    return fn


def require(cond, msg):
    if not cond:
        raise AssertionError(msg)


def seed():
    """The run's seed: $MT_SEED, else drawn from the clock and printed by the
    runner (rerun with MT_SEED=N to repeat a failure)."""
    return int(os.environ["MT_SEED"])


def gen(name):
    """A generator of its own for each test, derived from the run's seed."""
    g = torch.Generator()
    g.manual_seed((seed() * 1000003 + zlib.crc32(name.encode())) % (2 ** 63))
    return g


def uniform(g, shape, amp=1.0, dtype=torch.float32):
    """Uniform in [-amp, amp) without zeros (a zero would hide a term),
    rounded to dtype."""
    x = (torch.rand(shape, generator=g, dtype=torch.float64) * 2 - 1) * amp
    x = torch.where(x == 0, torch.full_like(x, amp / 2), x)
    return x.to(dtype)


def weights(g, H, D, kq_pre=None, head_pre=False, kq_post=None, head_post=None,
            head_post_linear=False, gn=False, gate=False):
    """Random float32 weights for the parts asked for, scaled like the
    tuner's sampler (tuner/measure/sample.c) so logits stay O(1)."""
    w = {}
    if kq_pre:
        cq, ck = kq_pre
        w["kq_pre"] = uniform(g, (H, 1, cq, ck), 4.0 / (1 + cq * ck))
    if head_pre:
        w["head_pre"] = uniform(g, (H, H), 2.0 / H)
    if kq_post:
        cq, ck = kq_post
        w["kq_post"] = uniform(g, (H, 1, cq, ck), 4.0 / (1 + cq * ck))
    if head_post:
        c = head_post
        w["head_post"] = uniform(g, (H // c, c, c), 1.0)
    if head_post_linear:
        w["head_post_linear"] = uniform(g, (H, H), 2.0 / H)
    if gn:
        w["gn_weight"] = uniform(g, (D,), 1.0)
    if gate:
        w["gate_w"] = uniform(g, (1, D), 1.0)
        w["gate_b"] = uniform(g, (1,), 1.0)
    return w


def qkv(g, B, T, H, Hkv, D, dtype):
    return (uniform(g, (B, T, H, D), 1.0, dtype), uniform(g, (B, T, Hkv, D), 1.0, dtype),
            uniform(g, (B, T, Hkv, D), 1.0, dtype))


def _grad_cancel():
    """MTA_GRAD_CANCEL, read from runtime/mta.h (a #define, not a symbol)."""
    with open(os.path.join(REPO, "runtime", "mta.h")) as f:
        for line in f:
            if line.startswith("#define MTA_GRAD_CANCEL "):
                return float(line.split()[2])
    raise RuntimeError("runtime/mta.h defines no MTA_GRAD_CANCEL")


GRAD_CANCEL = _grad_cancel()


def compare(o, e, dtype, grad=False, mag=None):
    """(ok, message): o (any dtype) against the float64 reference e under the
    bounds mta_compare applies to dtype's problems, with the numbers taken
    from the library (mta_tolerance, mta_tolerance_elem; with grad, those of
    mta_compare_grad): relative L2 error <= tol and every element
    |o-e| <= atol*rms(e) + rtol*|e|. NaN fails. mag (a gradient's terms'
    magnitudes, as mta_compare_grad_mag takes them) judges each element on
    s = max(|e|, MTA_GRAD_CANCEL * mag) in place of |e|."""
    tol, atol, rtol = (_lib.tolerance_grad if grad else _lib.tolerance)(DTYPE_CODE[dtype])
    o = o.detach().to(torch.float64).reshape(-1)
    e = e.detach().to(torch.float64).reshape(-1)
    if o.shape != e.shape:
        return False, f"{o.numel()} elements, expected {e.numel()}"
    finite = torch.isfinite(o)
    if not finite.all():
        i = int((~finite).nonzero()[0])
        return False, f"{int((~finite).sum())} non-finite elements, first [{i}] = {o[i]}"
    s = e.abs()
    if mag is not None:
        s = torch.maximum(s, GRAD_CANCEL * mag.detach().to(torch.float64).reshape(-1))
    rel = float((o - e).norm() / s.norm())
    rms = float(s.pow(2).mean().sqrt())
    bound = atol * rms + rtol * s
    excess = (o - e).abs() - bound
    bad = int((excess > 0).sum())
    w = int(excess.argmax())
    msg = (f"rel L2 {rel:.3g} (tol {tol:g}), {bad} of {o.numel()} elements beyond "
           f"|o-e| <= {atol:g}*rms + {rtol:g}*|e| (rms {rms:.3g}); worst [{w}] {float(o[w]):.6g} "
           f"expected {float(e[w]):.6g}")
    return rel <= tol and bad == 0, msg


def gate_magnitudes(taps, dout):
    """The gate weights' gradients' terms' magnitudes, as the C reference
    backward adds them up (mta_reference_grads.mag): the gate bias sums
    dz = sg'(z) * sum_e dout_e n_e over every row and head, its terms taken
    as sg'(z) * sum_e |dout_e n_e|; gate_w[e] sums dz * n_e likewise. The
    bias's gradient is one number whose terms can cancel far below float32's
    rounding of them; {} when the problem has no gate."""
    if "gate_z" not in taps:
        return {}
    n = taps["gate_in"].detach()
    sg = torch.sigmoid(taps["gate_z"].detach())
    dz = sg * (1 - sg) * (dout.abs() * n.abs()).sum(-1)
    return {"gate_b": dz.sum().reshape(1), "gate_w": (dz.unsqueeze(-1) * n.abs()).sum((0, 1, 2))
            .reshape(1, -1)}


def check(o, e, dtype, what=""):
    ok, msg = compare(o, e, dtype)
    require(ok, f"{what}: {msg}" if what else msg)
    return msg


def golden_dir():
    """$MTA_GOLDEN, else ../shared/golden beside the repository (absent on CI)."""
    return os.environ.get("MTA_GOLDEN") or os.path.join(REPO, "..", "shared", "golden")


def golden_cases():
    d = golden_dir()
    if not os.path.isdir(d):
        raise Skip(f"no golden cases at {os.path.normpath(d)} (set MTA_GOLDEN)")
    names = sorted(n for n in os.listdir(d) if os.path.isfile(os.path.join(d, n, "config.json")))
    if not names:
        raise Skip(f"no golden cases in {d}")
    return [(n, os.path.join(d, n)) for n in names]


_NPY_TYPES = {"<f4": torch.float32, "<f8": torch.float64, "<f2": torch.float16}


def load_npy(path):
    """A little-endian, C-order float .npy file as a tensor (no numpy needed)."""
    with open(path, "rb") as f:
        data = f.read()
    require(data[:6] == b"\x93NUMPY", f"{path}: not a .npy file")
    major = data[6]
    if major == 1:
        (hlen,), off = struct.unpack("<H", data[8:10]), 10
    else:
        (hlen,), off = struct.unpack("<I", data[8:12]), 12
    header = ast.literal_eval(data[off:off + hlen].decode("latin1"))
    require(not header["fortran_order"], f"{path}: Fortran order")
    dt = _NPY_TYPES.get(header["descr"])
    require(dt is not None, f"{path}: dtype {header['descr']} not handled here")
    body = bytearray(data[off + hlen:])
    n = math.prod(header["shape"])
    return torch.frombuffer(body, dtype=dt, count=n).reshape(header["shape"]).clone()
