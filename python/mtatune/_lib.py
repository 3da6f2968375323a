"""_lib.py: libmtatune.so through ctypes.

This module is the only place that knows the C library: where it is, the
layout of the structs of runtime/mta.h, the signatures of the functions the
package calls, and how a status becomes a Python exception. It does not
import torch; mtatune.torch turns tensors into the plain values (pointers,
shapes, strides) that the functions here take.

Where the library is found (the first that applies, see library_path()):
  1. $MTATUNE_LIB, the path of a libmtatune.so (it must exist: a wrong
     value is an error, never a silent fall-back);
  2. the copy installed inside the package (mtatune/lib/libmtatune.so),
     made by `pip install ./python` from the repository's lib/;
  3. the repository's lib/libmtatune.so, when the package is imported from
     its source folder (python/mtatune/ -> ../../lib/).

Kernels are compiled and cached by the library itself ($MTATUNE_CACHE), and
tuned winners come from its database ($MTATUNE_DB or the db argument):
everything the command line documents applies.
"""
import ctypes
import os
import threading

# ---- status codes and errors (runtime/mta.h) -----------------------------
MTA_OK = 0
MTA_EINVAL = 1
MTA_ESHAPE = 5

# element types (mta_dtype)
MTA_F32, MTA_BF16, MTA_F16, MTA_F64 = 0, 1, 2, 3
# pad_key (mta_pad) and head_post kinds (mta_hpost)
PADS = {"both": 0, "left": 1, "right": 2}
MTA_HPOST_NONE, MTA_HPOST_CONV, MTA_HPOST_LINEAR = 0, 1, 2

# where a tensor's memory is (enum mta_memory)
MTA_MEM_HOST, MTA_MEM_DEVICE = 0, 1

MTA_KEY_MAX = 160
MTA_SPEC_MAX = 128
MTA_MAX_HEADS = 256
MTA_MAX_HEAD_DIM = 1024
MTA_MAX_KERNEL = 64


class MTAError(RuntimeError):
    """A failure reported by libmtatune: .status is its MTA_E* code,
    .status_name its short name (e.g. "ECOMPILE"), str() the library's
    message."""

    def __init__(self, status, status_name, message):
        super().__init__(f"mtatune: {message} ({status_name})")
        self.status = status
        self.status_name = status_name


# ---- the structs of runtime/mta.h, field for field -----------------------
# A test (python/tests/test_lib.py) compiles a C program against
# runtime/mta.h and compares every size and offset with these.
class Problem(ctypes.Structure):
    _fields_ = [
        ("H", ctypes.c_int), ("Hkv", ctypes.c_int), ("D", ctypes.c_int),
        ("cq", ctypes.c_int), ("ck", ctypes.c_int),
        ("head_pre", ctypes.c_int),
        ("cq2", ctypes.c_int), ("ck2", ctypes.c_int),
        ("head_post", ctypes.c_int), ("hc", ctypes.c_int),
        ("pad", ctypes.c_int),
        ("gn", ctypes.c_int), ("gn_rescale", ctypes.c_int), ("gate", ctypes.c_int),
        ("scale", ctypes.c_float),
        ("dtype", ctypes.c_int),
    ]


class Tensor(ctypes.Structure):
    _fields_ = [
        ("data", ctypes.c_void_p),
        ("dtype", ctypes.c_int),
        ("shape", ctypes.c_int64 * 4),
        ("stride", ctypes.c_int64 * 4),
        ("memory", ctypes.c_int),
    ]


_FP = ctypes.POINTER(ctypes.c_float)


class Weights(ctypes.Structure):
    _fields_ = [
        ("kq_pre", _FP), ("head_pre", _FP), ("kq_post", _FP), ("head_post", _FP),
        ("head_post_linear", _FP), ("gn_weight", _FP), ("gate_w", _FP),
        ("gate_b", ctypes.c_float),
        ("layer_id", ctypes.c_int),
        ("gate_b_ptr", _FP),
    ]


# struct mta_grads: where mta_backward writes (float32, contiguous; NULL where
# the problem has no such weight).
GRAD_NAMES = ("dq", "dk", "dv", "kq_pre", "head_pre", "kq_post", "head_post",
              "head_post_linear", "gn_weight", "gate_w", "gate_b")


class Grads(ctypes.Structure):
    _fields_ = [(n, ctypes.POINTER(ctypes.c_float)) for n in GRAD_NAMES]


class Pick(ctypes.Structure):
    _fields_ = [
        ("spec", ctypes.c_char * MTA_SPEC_MAX),
        ("source", ctypes.c_int), ("rung", ctypes.c_int),
        ("t_bucket", ctypes.c_int64), ("b_bucket", ctypes.c_int64),
        ("speedup", ctypes.c_double), ("ci_low", ctypes.c_double),
        ("ci_high", ctypes.c_double),
        ("rounds", ctypes.c_int), ("significant", ctypes.c_int),
    ]


class Stats(ctypes.Structure):
    _fields_ = [(n, ctypes.c_uint64) for n in
                ("calls", "device_allocs", "host_allocs", "kernel_loads", "syncs")]


def tensor(data_ptr, dtype, shape, stride, memory=MTA_MEM_HOST):
    """A struct mta_tensor viewing memory at data_ptr (an int address);
    shape and stride (in elements) are 4 ints each; memory MTA_MEM_HOST or
    MTA_MEM_DEVICE."""
    t = Tensor()
    t.data = data_ptr
    t.dtype = dtype
    t.memory = memory
    for i in range(4):
        t.shape[i] = int(shape[i])
        t.stride[i] = int(stride[i])
    return t


def float_ptr(addr):
    """A const float * for the Weights struct from an int address (0: NULL)."""
    return ctypes.cast(ctypes.c_void_p(addr or None), _FP)


# ---- finding and loading the library -------------------------------------
_HERE = os.path.dirname(os.path.abspath(__file__))
LIB_NAME = "libmtatune.so"


def library_candidates():
    """The places looked at, in order, as (what, path) pairs."""
    out = []
    env = os.environ.get("MTATUNE_LIB")
    if env:
        out.append(("$MTATUNE_LIB", env))
    out.append(("the package's copy", os.path.join(_HERE, "lib", LIB_NAME)))
    out.append(("the repository's lib/",
                os.path.normpath(os.path.join(_HERE, "..", "..", "lib", LIB_NAME))))
    return out


def library_path():
    """The path of the libmtatune.so to load (see the module's comment).
    MTAError(ENOTFOUND) naming every place tried when there is none."""
    env = os.environ.get("MTATUNE_LIB")
    if env:
        if not os.path.isfile(env):
            raise MTAError(9, "ENOTFOUND", f"$MTATUNE_LIB names {env!r}, which is not a "
                           "file: point it at a libmtatune.so, or unset it to use the "
                           "package's copy")
        return env
    tried = []
    for what, path in library_candidates():
        if os.path.isfile(path):
            return path
        tried.append(f"{what} {path}")
    raise MTAError(9, "ENOTFOUND", "libmtatune.so not found (tried " + ", ".join(tried) +
                   "): run `make python` in the mtatune repository, or set $MTATUNE_LIB")


_lock = threading.Lock()
_lib = None
_lib_path = None


def _sig(lib, name, res, *args):
    f = getattr(lib, name)
    f.restype = res
    f.argtypes = list(args)


def lib():
    """The loaded library (loaded and typed on first use)."""
    global _lib, _lib_path
    if _lib is not None:
        return _lib
    with _lock:
        if _lib is not None:
            return _lib
        path = library_path()
        try:
            l = ctypes.CDLL(path)
        except OSError as e:
            raise MTAError(9, "ENOTFOUND", f"cannot load {path}: {e}") from None
        P, c_int, c_int64, vp = ctypes.POINTER, ctypes.c_int, ctypes.c_int64, ctypes.c_void_p
        _sig(l, "mta_last_error", ctypes.c_char_p)
        _sig(l, "mta_status_name", ctypes.c_char_p, c_int)
        _sig(l, "mta_problem_init", None, P(Problem), c_int, c_int, c_int)
        _sig(l, "mta_problem_validate", c_int, P(Problem))
        _sig(l, "mta_problem_key", c_int, P(Problem), ctypes.c_char_p, ctypes.c_size_t)
        _sig(l, "mta_layer_rescale", ctypes.c_double, c_int)
        _sig(l, "mta_tolerance", ctypes.c_double, c_int)
        _sig(l, "mta_tolerance_elem", None, c_int, P(ctypes.c_double), P(ctypes.c_double))
        _sig(l, "mta_tolerance_grad", ctypes.c_double, c_int)
        _sig(l, "mta_tolerance_grad_elem", None, c_int, P(ctypes.c_double),
             P(ctypes.c_double))
        _sig(l, "mta_context_create", c_int, P(vp), ctypes.c_char_p, ctypes.c_char_p, c_int)
        _sig(l, "mta_context_free", None, vp)
        _sig(l, "mta_context_pick", c_int, vp, P(Problem), c_int64, c_int64, P(Pick))
        _sig(l, "mta_context_pick_op", c_int, vp, P(Problem), ctypes.c_char_p, c_int64, c_int64,
             P(Pick))
        _sig(l, "mta_forward", c_int, vp, P(Problem), P(Tensor), P(Tensor), P(Tensor),
             P(Weights), P(Tensor))
        _sig(l, "mta_saved_bytes", c_int64, P(Problem), c_int64, c_int64)
        _sig(l, "mta_forward_train", c_int, vp, P(Problem), P(Tensor), P(Tensor), P(Tensor),
             P(Weights), P(Tensor), vp)
        _sig(l, "mta_backward", c_int, vp, P(Problem), P(Tensor), P(Tensor), P(Tensor),
             P(Weights), vp, P(Tensor), P(Grads))
        # packed documents and decode (mta.h)
        _sig(l, "mta_forward_varlen", c_int, vp, P(Problem), P(Tensor), P(Tensor), P(Tensor),
             P(Weights), P(c_int64), c_int64, P(Tensor))
        _sig(l, "mta_forward_train_varlen", c_int, vp, P(Problem), P(Tensor), P(Tensor),
             P(Tensor), P(Weights), P(c_int64), c_int64, P(Tensor), vp)
        _sig(l, "mta_backward_varlen", c_int, vp, P(Problem), P(Tensor), P(Tensor), P(Tensor),
             P(Weights), vp, P(Tensor), P(c_int64), c_int64, P(Grads))
        _sig(l, "mta_cache_create_ctx", c_int, vp, P(Problem), c_int64, P(vp))
        _sig(l, "mta_cache_free", None, vp)
        _sig(l, "mta_cache_seqlens", c_int, vp, P(c_int64))
        _sig(l, "mta_cache_reset", c_int, vp, c_int64)
        _sig(l, "mta_decode", c_int, vp, P(Tensor), P(Tensor), P(Tensor), P(Weights),
             P(c_int64), P(Tensor))
        _sig(l, "mta_weights_load", c_int, vp, P(Problem), P(Weights), c_int, P(vp))
        _sig(l, "mta_weights_free", None, vp)
        _sig(l, "mta_attention", c_int, vp, P(Problem), vp, P(Tensor), P(Tensor), P(Tensor),
             P(Tensor), ctypes.c_float, vp)
        _sig(l, "mta_context_reserve", c_int, vp, P(Problem), c_int64, c_int64)
        _sig(l, "mta_stream_synchronize", c_int, vp, vp)
        _sig(l, "mta_context_stats", None, vp, P(Stats))
        _lib_path = path
        _lib = l
    return _lib


def loaded_path():
    """The path the library was loaded from (loading it if needed)."""
    lib()
    return _lib_path


def _check(rc, what, bad_input=False):
    """Raise for a non-zero status: ValueError for EINVAL/ESHAPE when the call
    checks caller input (bad_input), else MTAError, with the library's message."""
    if rc == MTA_OK:
        return
    l = lib()
    msg = (l.mta_last_error() or b"").decode("utf-8", "replace") or "(no message)"
    name = (l.mta_status_name(rc) or b"?").decode()
    if bad_input and rc in (MTA_EINVAL, MTA_ESHAPE):
        raise ValueError(f"mtatune: {what}: {msg}")
    raise MTAError(rc, name, f"{what}: {msg}")


# ---- problems, tolerances -------------------------------------------------
def problem_validate(p):
    """ValueError with the library's message if p breaks one of its rules."""
    _check(lib().mta_problem_validate(ctypes.byref(p)), "invalid problem", bad_input=True)


def problem_key(p):
    """The canonical key of p (validated), e.g. h4kv4d16-pre3x5-both-f32."""
    buf = ctypes.create_string_buffer(MTA_KEY_MAX)
    _check(lib().mta_problem_key(ctypes.byref(p), buf, MTA_KEY_MAX), "problem key",
           bad_input=True)
    return buf.value.decode()


def tolerance(dtype):
    """(rel_l2, atol, rtol): the bounds mta_compare applies to dtype's problems."""
    l = lib()
    a, r = ctypes.c_double(), ctypes.c_double()
    l.mta_tolerance_elem(dtype, ctypes.byref(a), ctypes.byref(r))
    return l.mta_tolerance(dtype), a.value, r.value


def tolerance_grad(dtype):
    """(rel_l2, atol, rtol): the bounds mta_compare_grad applies to gradients."""
    l = lib()
    a, r = ctypes.c_double(), ctypes.c_double()
    l.mta_tolerance_grad_elem(dtype, ctypes.byref(a), ctypes.byref(r))
    return l.mta_tolerance_grad(dtype), a.value, r.value


def layer_rescale(layer_id):
    return lib().mta_layer_rescale(int(layer_id))


# ---- contexts -------------------------------------------------------------
class Context:
    """One mta_context: a backend, a device of it, a database, and the
    kernels loaded so far. Freed when the object is collected; contexts()
    keeps one per (backend, device, db) for the process's life."""

    def __init__(self, backend, device, db):
        self.backend, self.device, self.db = backend, device, db
        self._p = ctypes.c_void_p()
        self._free = lib().mta_context_free
        rc = lib().mta_context_create(ctypes.byref(self._p),
                                      None if db is None else os.fsencode(db),
                                      backend.encode(), int(device))
        _check(rc, f"cannot open a {backend} context (device {device}, database "
               f"{db if db is not None else 'default'})")

    @property
    def handle(self):
        return self._p

    def pick(self, p, B, T, op="fwd"):
        """(spec, source) of the variant a call at (B, T) runs: the forward's
        (mta_context_pick), or with op="bwd" the backward's (mta_context_pick_op)."""
        k = Pick()
        _check(lib().mta_context_pick_op(self._p, ctypes.byref(p), op.encode(), int(B),
                                         int(T), ctypes.byref(k)), "pick")
        return k.spec.decode(), k.source

    def __del__(self):
        p, self._p = getattr(self, "_p", None), None
        if p:
            self._free(p)


_contexts = {}
_contexts_lock = threading.Lock()


def context(backend, device, db):
    """The process's context for (backend, device index, db path or None),
    created on first use. Contexts are thread-safe in the library, and
    creating one costs a database open, so one is kept per key."""
    key = (backend, int(device), None if db is None else os.fspath(db))
    c = _contexts.get(key)
    if c is None:
        with _contexts_lock:
            c = _contexts.get(key)
            if c is None:
                c = Context(*key)
                _contexts[key] = c
    return c


# ---- running ---------------------------------------------------------------
def forward_host(ctx, p, q, k, v, w, o):
    """mta_forward on host memory: q, k, v, o are Tensor structs over memory
    the caller keeps alive for the call, w a Weights struct (float32 arrays).
    Returns when o is written (the GIL is released meanwhile)."""
    rc = lib().mta_forward(ctx.handle, ctypes.byref(p), ctypes.byref(q), ctypes.byref(k),
                           ctypes.byref(v), ctypes.byref(w), ctypes.byref(o))
    _check(rc, "mta_forward")


def saved_bytes(p, B, T):
    """Bytes of the state mta_forward_train saves for mta_backward at (B, T)."""
    n = lib().mta_saved_bytes(ctypes.byref(p), int(B), int(T))
    if n < 0:
        raise ValueError(f"mtatune: no saved-state size for B={B}, T={T}")
    return n


def backward_host(ctx, p, q, k, v, w, o, saved, dout, grads):
    """mta_forward_train into o and saved (an int address of saved_bytes
    bytes), then mta_backward from dout into grads (a Grads struct): the
    recomputed forward and the backward, on host memory."""
    l = lib()
    rc = l.mta_forward_train(ctx.handle, ctypes.byref(p), ctypes.byref(q), ctypes.byref(k),
                             ctypes.byref(v), ctypes.byref(w), ctypes.byref(o),
                             ctypes.c_void_p(saved))
    _check(rc, "mta_forward_train")
    rc = l.mta_backward(ctx.handle, ctypes.byref(p), ctypes.byref(q), ctypes.byref(k),
                        ctypes.byref(v), ctypes.byref(w), ctypes.c_void_p(saved),
                        ctypes.byref(dout), ctypes.byref(grads))
    _check(rc, "mta_backward")


# ---- packed documents and decode (mta.h) -----------------------------------
def forward_varlen_host(ctx, p, q, k, v, w, cu_seqlens, o):
    """mta_forward_varlen on host memory: q, k, v, o Tensor structs with
    B = 1; cu_seqlens a sequence of ints (ndocs+1 offsets, checked by the
    library)."""
    n = len(cu_seqlens)
    cu = (ctypes.c_int64 * max(n, 1))(*[int(x) for x in cu_seqlens])
    rc = lib().mta_forward_varlen(ctx.handle, ctypes.byref(p), ctypes.byref(q),
                                  ctypes.byref(k), ctypes.byref(v), ctypes.byref(w), cu,
                                  n - 1, ctypes.byref(o))
    _check(rc, "mta_forward_varlen", bad_input=True)


def backward_varlen_host(ctx, p, q, k, v, w, cu_seqlens, o, saved, dout, grads):
    """backward_host on packed documents: mta_forward_train_varlen into o
    and saved (saved_bytes(p, 1, total_T) bytes), then mta_backward_varlen
    from dout into grads; cu_seqlens a sequence of ints (checked by the
    library)."""
    l = lib()
    n = len(cu_seqlens)
    cu = (ctypes.c_int64 * max(n, 1))(*[int(x) for x in cu_seqlens])
    rc = l.mta_forward_train_varlen(ctx.handle, ctypes.byref(p), ctypes.byref(q),
                                    ctypes.byref(k), ctypes.byref(v), ctypes.byref(w), cu,
                                    n - 1, ctypes.byref(o), ctypes.c_void_p(saved))
    _check(rc, "mta_forward_train_varlen", bad_input=True)
    rc = l.mta_backward_varlen(ctx.handle, ctypes.byref(p), ctypes.byref(q), ctypes.byref(k),
                               ctypes.byref(v), ctypes.byref(w), ctypes.c_void_p(saved),
                               ctypes.byref(dout), cu, n - 1, ctypes.byref(grads))
    _check(rc, "mta_backward_varlen", bad_input=True)


class Cache:
    """One mta_cache of a context's backend (mta_cache_create_ctx): batch
    sequences of problem p. Freed when collected; it keeps its context."""

    def __init__(self, ctx, p, batch):
        self.ctx, self.batch = ctx, int(batch)
        self._p = ctypes.c_void_p()
        self._free = lib().mta_cache_free
        _check(lib().mta_cache_create_ctx(ctx.handle, ctypes.byref(p), self.batch,
                                          ctypes.byref(self._p)), "mta_cache_create_ctx",
               bad_input=True)

    def seqlens(self):
        lens = (ctypes.c_int64 * self.batch)()
        _check(lib().mta_cache_seqlens(self._p, lens), "mta_cache_seqlens")
        return list(lens)

    def reset(self, b):
        _check(lib().mta_cache_reset(self._p, int(b)), "mta_cache_reset", bad_input=True)

    def decode(self, q, k, v, w, n_new, o):
        """mta_decode: Tensor structs q, k, v [B,Tn,...], o float32; n_new a
        sequence of B ints or None."""
        nn = None if n_new is None else (ctypes.c_int64 * self.batch)(*[int(x) for x in n_new])
        _check(lib().mta_decode(self._p, ctypes.byref(q), ctypes.byref(k), ctypes.byref(v),
                                ctypes.byref(w), nn, ctypes.byref(o)), "mta_decode",
               bad_input=True)

    def __del__(self):
        p, self._p = getattr(self, "_p", None), None
        if p:
            self._free(p)
class WeightsHandle:
    """An mta_wts of ctx for problem p: the Weights struct W's arrays, in
    memory (MTA_MEM_HOST or MTA_MEM_DEVICE). Device arrays (and host ones
    on a cpu context) are referenced, not copied: the caller keeps them
    alive as long as the handle. Freed when collected."""

    def __init__(self, ctx, p, W, memory):
        self.ctx = ctx  # the handle belongs to the context: keep it alive
        self._h = ctypes.c_void_p()
        self._free = lib().mta_weights_free
        _check(lib().mta_weights_load(ctx.handle, ctypes.byref(p), ctypes.byref(W), memory,
                                      ctypes.byref(self._h)), "mta_weights_load")

    @property
    def handle(self):
        return self._h

    def __del__(self):
        h, self._h = getattr(self, "_h", None), None
        if h:
            self._free(h)


def attention(ctx, p, wts, q, k, v, o, stream=0):
    """mta_attention: q, k, v, o are Tensor structs (memory marked) over
    memory the caller keeps alive until the stream has run the call; wts a
    WeightsHandle (or None when p uses no weight); stream a CUstream as an
    int (0: the context's own; ignored on cpu). On a cuda context it
    enqueues and returns; on cpu it returns when o is written. The scale is
    p's (mta_attention's scale argument 0)."""
    rc = lib().mta_attention(ctx.handle, ctypes.byref(p), wts.handle if wts else None,
                             ctypes.byref(q), ctypes.byref(k), ctypes.byref(v),
                             ctypes.byref(o), 0.0, ctypes.c_void_p(stream or None))
    _check(rc, "mta_attention", bad_input=True)


def stats(ctx):
    """mta_context_stats as a dict."""
    s = Stats()
    lib().mta_context_stats(ctx.handle, ctypes.byref(s))
    return {n: getattr(s, n) for n, _ in Stats._fields_}
