"""mtatune.torch: Multi-Token Attention on torch tensors, through libmtatune.

    from mtatune.torch import mta_attention, MTAttention
    o = mta_attention(q, k, v, kq_pre=w_pre, head_pre=w_head)   # o [B,T,H,D]

mta_attention is registered as the custom operator mtatune::mta_attention
(torch.library.custom_op) with a fake implementation, so torch.compile
(fullgraph=True) traces through it. On CPU tensors it has a backward
(register_autograd): the library's generated CPU backward gives the
gradients of q, k, v and of every weight given, packed documents
(cu_seqlens) included; on CUDA tensors calling backward raises
NotImplementedError: the library's CUDA backward (mta_forward_train and
mta_backward on a cuda context) takes host tensors, and the binding has no
device-tensor path for it yet.

The operation is MTA.md's: q [B,T,H,D], k and v [B,T,Hkv,D]; the optional
weights have the shapes of the paper's reference parameters, and which of
them are given decides the problem (see problem_key()). CPU tensors run the
CPU backend (the tuned winner from the database, else the default variant)
on the tensors' own memory; CUDA tensors run the CUDA backend on their
device memory (pointers and strides, no copies), enqueued on the current
stream of q's device without synchronising, so the call can be captured in
a CUDA graph. Both go through the library's mta_attention with o allocated
in q's dtype, and the weights in a handle kept per set of weight tensors.
"""
import math
import numbers
import os
import threading
from typing import Optional

import torch
from torch import Tensor, nn

from . import _lib
from ._lib import MTAError

__all__ = ["mta_attention", "problem_key", "MTAttention", "MTAError", "DecodeCache"]

_DTYPES = {torch.float32: _lib.MTA_F32, torch.bfloat16: _lib.MTA_BF16,
           torch.float16: _lib.MTA_F16}
# The weights, in the order of the operator's arguments.
WEIGHTS = ("kq_pre", "head_pre", "kq_post", "head_post", "head_post_linear",
           "gn_weight", "gate_w", "gate_b")

# Tests set this: the output is filled with NaN before the kernel writes it,
# so an element the kernel misses cannot pass a comparison.
_poison_output = False


def _shp(t):
    return "[" + ",".join(str(int(s)) for s in t.shape) + "]"


def _bad(msg):
    raise ValueError("mta_attention: " + msg)


def _check_args(q, k, v, weights, pad_key, layer_id, scale, db):
    """Type checks of the Python-level arguments, before the operator is
    called (plain Python, so torch.compile traces through them)."""
    for name, t in (("q", q), ("k", k), ("v", v)):
        if not isinstance(t, Tensor):
            _bad(f"{name} must be a torch.Tensor, not {type(t).__name__}")
    for name, t in weights.items():
        if t is not None and not isinstance(t, Tensor):
            _bad(f"{name} must be a torch.Tensor or None, not {type(t).__name__}")
    if not isinstance(pad_key, str) or pad_key not in _lib.PADS:
        _bad(f"pad_key is {pad_key!r}: expected 'both', 'left' or 'right'")
    if layer_id is not None and (isinstance(layer_id, bool) or
                                 not isinstance(layer_id, numbers.Integral)):
        _bad(f"layer_id must be an int (the layer's index) or None, not {layer_id!r}")
    if scale is not None and (isinstance(scale, bool) or not isinstance(scale, numbers.Real)):
        _bad(f"scale must be a number or None, not {scale!r}")
    if db is not None and not isinstance(db, str):
        _bad(f"db must be a path (str or os.PathLike) or None, not {type(db).__name__}")


def _problem(q, k, v, w, pad_key, layer_id, scale):
    """The struct mta_problem that q, k, v and the weights w (a dict by
    name, None for absent) describe, after checking every shape, dtype and
    device; ValueError naming the tensor and what was expected otherwise.
    Runs on real and fake tensors alike (shapes only)."""
    for name, t in (("q", q), ("k", k), ("v", v)):
        if t.dim() != 4:
            _bad(f"{name} has shape {_shp(t)}: expected 4 dimensions "
                 f"[B,T,{'H' if name == 'q' else 'Hkv'},D]")
    # B and T stay symbolic under torch.compile (one graph for every length):
    # int() would specialise the graph to the traced sizes; H and D are the
    # problem's, baked into its kernels
    B, T = q.shape[0], q.shape[1]
    H, D = int(q.shape[2]), int(q.shape[3])
    if q.device.type not in ("cpu", "cuda", "meta"):
        _bad(f"q is on {q.device}: expected a cpu or cuda tensor")
    if q.dtype not in _DTYPES:
        _bad(f"q has dtype {q.dtype}: expected torch.float32, torch.bfloat16 or torch.float16")
    for name, t in (("k", k), ("v", v)):
        if t.device != q.device:
            _bad(f"{name} is on {t.device} but q is on {q.device}: q, k, v and the weights "
                 "must be on one device")
        if t.dtype != q.dtype:
            _bad(f"{name} has dtype {t.dtype} but q has {q.dtype}: q, k and v must have "
                 "one dtype")
        if t.shape[0] != B or t.shape[1] != T:
            _bad(f"{name} has shape {_shp(t)} but q has {_shp(q)}: expected [B,T,Hkv,D] "
                 f"with q's B={B}, T={T}")
        if int(t.shape[3]) != D:
            _bad(f"{name} has shape {_shp(t)} but q has {_shp(q)}: expected q's head "
                 f"dimension D={D}")
    Hkv = int(k.shape[2])
    if int(v.shape[2]) != Hkv:
        _bad(f"v has shape {_shp(v)} but k has {_shp(k)}: expected as many heads as k "
             f"(Hkv={Hkv})")
    if H < 1 or D < 1:
        _bad(f"q has shape {_shp(q)}: H and D must be at least 1")
    if H % Hkv:
        _bad(f"q has H={H} heads and k has Hkv={Hkv}: H must be a multiple of Hkv")
    if H > _lib.MTA_MAX_HEADS or D > _lib.MTA_MAX_HEAD_DIM:
        _bad(f"q has shape {_shp(q)}: at most {_lib.MTA_MAX_HEADS} heads of size "
             f"{_lib.MTA_MAX_HEAD_DIM} are supported")
    for name, t in (("q", q), ("k", k), ("v", v)):
        if D > 1 and t.stride(3) != 1:
            _bad(f"{name} has strides {tuple(t.stride())}: the last dimension (D) must be "
                 "contiguous (stride 1); pass .contiguous() or a view whose D is dense")

    for name, t in w.items():
        if t is None:
            continue
        if t.device != q.device:
            _bad(f"{name} is on {t.device} but q is on {q.device}: the weights must be on "
                 "q's device")
        if not t.is_floating_point():
            _bad(f"{name} has dtype {t.dtype}: expected a floating-point tensor")

    p = _lib.Problem()
    p.H, p.Hkv, p.D = H, Hkv, D
    p.pad = _lib.PADS[pad_key]
    p.dtype = _DTYPES[q.dtype]

    def conv(name):
        t = w[name]
        if t is None:
            return 0, 0
        if t.dim() != 4 or int(t.shape[0]) != H or int(t.shape[1]) != 1:
            _bad(f"{name} has shape {_shp(t)}: expected [H,1,cq,ck] with q's H={H}")
        cq, ck = int(t.shape[2]), int(t.shape[3])
        if not (1 <= cq <= _lib.MTA_MAX_KERNEL and 1 <= ck <= _lib.MTA_MAX_KERNEL):
            _bad(f"{name} has shape {_shp(t)}: cq and ck must be in 1..{_lib.MTA_MAX_KERNEL}")
        if pad_key == "both" and ck % 2 == 0:
            _bad(f"{name} has shape {_shp(t)}: pad_key='both' needs an odd key width ck "
                 f"(or pad_key='left'/'right')")
        return cq, ck

    p.cq, p.ck = conv("kq_pre")
    p.cq2, p.ck2 = conv("kq_post")
    for name in ("head_pre", "head_post_linear"):
        t = w[name]
        if t is not None and (t.dim() != 2 or tuple(int(s) for s in t.shape) != (H, H)):
            _bad(f"{name} has shape {_shp(t)}: expected [H,H] = [{H},{H}] (q's H)")
    p.head_pre = int(w["head_pre"] is not None)
    hp, hpl = w["head_post"], w["head_post_linear"]
    if hp is not None and hpl is not None:
        _bad("head_post and head_post_linear were both given: the post-softmax head "
             "mixing is one or the other")
    if hp is not None:
        if (hp.dim() != 3 or int(hp.shape[1]) != int(hp.shape[2]) or int(hp.shape[1]) < 1 or
                int(hp.shape[0]) * int(hp.shape[1]) != H):
            _bad(f"head_post has shape {_shp(hp)}: expected [H/c,c,c] for a group size c "
                 f"dividing q's H={H}")
        p.head_post, p.hc = _lib.MTA_HPOST_CONV, int(hp.shape[1])
    elif hpl is not None:
        p.head_post = _lib.MTA_HPOST_LINEAR
    g = w["gn_weight"]
    if g is not None and (g.dim() != 1 or int(g.shape[0]) != D):
        _bad(f"gn_weight has shape {_shp(g)}: expected [D] = [{D}] (q's D)")
    p.gn = int(g is not None)
    gw, gb = w["gate_w"], w["gate_b"]
    if (gw is None) != (gb is None):
        _bad("gate_w and gate_b go together: give both (gate_w [1,D], gate_b [1]) or neither")
    if gw is not None:
        if gw.dim() != 2 or tuple(int(s) for s in gw.shape) != (1, D):
            _bad(f"gate_w has shape {_shp(gw)}: expected [1,D] = [1,{D}] (q's D)")
        if gb.dim() != 1 or int(gb.shape[0]) != 1:
            _bad(f"gate_b has shape {_shp(gb)}: expected [1]")
    p.gate = int(gw is not None)
    if layer_id is not None:
        if g is None:
            _bad("layer_id was given without gn_weight: the layer rescale applies to the "
                 "group norm")
        if not 0 <= layer_id < 2 ** 31:
            _bad(f"layer_id is {layer_id}: expected the layer's index, 0 or more")
        p.gn_rescale = 1
    if scale is not None:
        s = float(scale)
        # 0 would mean "the default" to the library: refuse it rather than
        # quietly computing something else.
        if not (math.isfinite(s) and s > 0):
            _bad(f"scale is {scale!r}: expected a finite positive number (or None: "
                 "1/sqrt(D))")
        p.scale = s
    # The library's own rules (limits, the scale's range) as the last word.
    _lib.problem_validate(p)
    return p


def _tensor_struct(t, memory=_lib.MTA_MEM_HOST):
    # D of size 1 is never stepped along: its stride, which PyTorch leaves free
    # (a transposed [..,1,n] view is "contiguous" with stride n along D), goes
    # to the library as 1. (The other strides stay: the kernels' alignment
    # tests read them, even of a dimension of size 1.)
    strides = list(t.stride())
    if t.dim() == 4 and t.shape[3] == 1:
        strides[3] = 1
    return _lib.tensor(t.data_ptr(), _DTYPES.get(t.dtype, _lib.MTA_F32), t.shape, strides,
                       memory)


def _weights_struct(w, layer_id):
    """(Weights struct, tensors to keep alive): the weights as float32
    contiguous tensors on their own device (no copy when they are already
    so, as parameters of an MTAttention in float32 are). gate_b is passed
    by pointer (gate_b_ptr), so it is read where the kernel runs: a CUDA
    bias is never read by the host (no synchronisation)."""
    W = _lib.Weights()
    keep = []
    for name in WEIGHTS:
        t = w[name]
        if t is not None:
            t = t.detach().to(torch.float32).contiguous()
            keep.append(t)
            setattr(W, "gate_b_ptr" if name == "gate_b" else name,
                    _lib.float_ptr(t.data_ptr()))
    W.layer_id = layer_id if layer_id is not None else 0
    return W, keep


# Weights handles, by (context, problem key, layer_id, every weight's address):
# a handle references the arrays (device memory on cuda, host memory on cpu),
# so one made for the same addresses serves every later call, and the call
# loads nothing. Parameters keep their addresses across training steps (an
# optimizer updates them in place: the kernels read the new values).
_handles = {}
_handles_lock = threading.Lock()
_HANDLES_MAX = 256


def _handle(ctx, p, W, layer_id, memory):
    key = (id(ctx), _lib.problem_key(p), layer_id,
           tuple(ctypes_addr(getattr(W, n)) for n in
                 ("kq_pre", "head_pre", "kq_post", "head_post", "head_post_linear",
                  "gn_weight", "gate_w", "gate_b_ptr")))
    h = _handles.get(key)
    if h is None:
        h = _lib.WeightsHandle(ctx, p, W, memory)
        with _handles_lock:
            if len(_handles) >= _HANDLES_MAX:
                _handles.clear()
            _handles[key] = h
    return h


def ctypes_addr(ptr):
    return _lib.ctypes.cast(ptr, _lib.ctypes.c_void_p).value or 0


def _run(ctx, p, q, k, v, w, layer_id, memory, stream):
    """mta_attention on q, k, v's own memory (pointers and strides, no
    copies) into o allocated in q's dtype on q's device."""
    W, keep = _weights_struct(w, layer_id)
    h = _handle(ctx, p, W, layer_id, memory) if keep else None
    o = torch.empty(q.shape, dtype=q.dtype, device=q.device)
    if _poison_output:
        o.fill_(float("nan"))
    _lib.attention(ctx, p, h, _tensor_struct(q, memory), _tensor_struct(k, memory),
                   _tensor_struct(v, memory), _tensor_struct(o, memory), stream)
    # keep: converted weights (if any) were allocated on this stream, so the
    # caching allocator reuses their memory only after the kernel in stream order
    del keep
    return o


def _forward_cpu(p, q, k, v, w, layer_id, db):
    """The CPU backend: returns when o is written."""
    return _run(_lib.context("cpu", 0, db), p, q, k, v, w, layer_id, _lib.MTA_MEM_HOST, 0)


def _forward_cpu_varlen(p, q, k, v, w, layer_id, db, cu_seqlens):
    """The packed-documents forward on the CPU backend (one kernel call)."""
    ctx = _lib.context("cpu", 0, db)
    W, keep = _weights_struct(w, layer_id)
    o = torch.empty(q.shape, dtype=torch.float32)
    if _poison_output:
        o.fill_(float("nan"))
    _lib.forward_varlen_host(ctx, p, _tensor_struct(q), _tensor_struct(k), _tensor_struct(v),
                             W, cu_seqlens.tolist(), _tensor_struct(o))
    del keep
    return o if q.dtype == torch.float32 else o.to(q.dtype)


def _check_cu_seqlens(q, cu_seqlens):
    if not isinstance(cu_seqlens, Tensor):
        _bad(f"cu_seqlens must be a torch.Tensor or None, not {type(cu_seqlens).__name__}")
    if cu_seqlens.dtype not in (torch.int32, torch.int64):
        _bad(f"cu_seqlens has dtype {cu_seqlens.dtype}: expected torch.int32 or torch.int64")
    if cu_seqlens.dim() != 1 or cu_seqlens.shape[0] < 2:
        _bad(f"cu_seqlens has shape {_shp(cu_seqlens)}: expected [ndocs+1] offsets "
             "(0 first, total_T last)")
    if q.dim() == 4 and q.shape[0] != 1:
        _bad(f"with cu_seqlens, q must be [1,total_T,H,D] (packed documents), not {_shp(q)}")


def _forward_cuda(p, q, k, v, w, layer_id, db):
    """The CUDA backend on q's device (its index is the context's device),
    enqueued on that device's current stream; no copy, no synchronisation,
    nothing allocated by the library after the first call of a problem.
    (Not run by the package's tests on a machine without a GPU: the GPU
    check, bench/gpu_run.sh, runs it against PyTorch.)"""
    index = q.device.index if q.device.index is not None else torch.cuda.current_device()
    stream = torch.cuda.current_stream(q.device).cuda_stream
    return _run(_lib.context("cuda", index, db), p, q, k, v, w, layer_id,
                _lib.MTA_MEM_DEVICE, stream)


@torch.library.custom_op("mtatune::mta_attention", mutates_args=())
def _mta_attention_op(q: Tensor, k: Tensor, v: Tensor, kq_pre: Optional[Tensor],
                      head_pre: Optional[Tensor], kq_post: Optional[Tensor],
                      head_post: Optional[Tensor], head_post_linear: Optional[Tensor],
                      gn_weight: Optional[Tensor], gate_w: Optional[Tensor],
                      gate_b: Optional[Tensor], pad_key: str, layer_id: Optional[int],
                      scale: Optional[float], db: Optional[str],
                      cu_seqlens: Optional[Tensor] = None) -> Tensor:
    w = dict(zip(WEIGHTS, (kq_pre, head_pre, kq_post, head_post, head_post_linear,
                           gn_weight, gate_w, gate_b)))
    p = _problem(q, k, v, w, pad_key, layer_id, scale)
    if q.numel() == 0 and cu_seqlens is None:
        # B or T is 0: nothing to attend, an empty output (as PyTorch's
        # attention); the library, which takes no empty tensors, is not called
        return q.new_empty(q.shape)
    if cu_seqlens is not None:
        if q.device.type != "cpu" or cu_seqlens.device.type != "cpu":
            raise NotImplementedError("mta_attention: cu_seqlens (packed documents) runs on "
                                      "the CPU only for now")
        return _forward_cpu_varlen(p, q, k, v, w, layer_id, db, cu_seqlens)
    if q.device.type == "cpu":
        return _forward_cpu(p, q, k, v, w, layer_id, db)
    if q.device.type == "cuda":
        return _forward_cuda(p, q, k, v, w, layer_id, db)
    _bad(f"q is on {q.device}: expected a cpu or cuda tensor")


@_mta_attention_op.register_fake
def _mta_attention_fake(q, k, v, kq_pre, head_pre, kq_post, head_post, head_post_linear,
                        gn_weight, gate_w, gate_b, pad_key, layer_id, scale, db,
                        cu_seqlens=None):
    w = dict(zip(WEIGHTS, (kq_pre, head_pre, kq_post, head_post, head_post_linear,
                           gn_weight, gate_w, gate_b)))
    _problem(q, k, v, w, pad_key, layer_id, scale)
    return q.new_empty(q.shape)  # contiguous [B,T,H,D] in q's dtype, like the real one


# ---- autograd: the generated CPU backward --------------------------------
# The backward is an operator of its own, so that torch.compile can trace a
# graph whose inputs require grad (its fake returns gradients of the right
# shapes). On the CPU it runs the library's saving forward again (the
# forward operator keeps its one output) and then the backward
# (mta_forward_train, mta_backward: templates/mta_cpu_bwd.c), so nothing but
# the inputs is kept between forward and backward. Gradients of absent
# weights come back as empty tensors, turned into None below. With
# cu_seqlens, the packed twins (mta_forward_train_varlen,
# mta_backward_varlen): each document alone, weight gradients summed.
NO_BACKWARD = ("mtatune's Python binding has no CUDA backward yet (the C library's CUDA "
               "backward takes host tensors; a device-tensor path for autograd is not "
               "written): on CUDA, mta_attention is forward-only; call it under "
               "torch.no_grad() / torch.inference_mode(), or detach its inputs")


@torch.library.custom_op("mtatune::mta_attention_backward", mutates_args=())
def _mta_attention_backward_op(grad_o: Tensor, q: Tensor, k: Tensor, v: Tensor,
                               kq_pre: Optional[Tensor], head_pre: Optional[Tensor],
                               kq_post: Optional[Tensor], head_post: Optional[Tensor],
                               head_post_linear: Optional[Tensor],
                               gn_weight: Optional[Tensor], gate_w: Optional[Tensor],
                               gate_b: Optional[Tensor], pad_key: str,
                               layer_id: Optional[int], scale: Optional[float],
                               db: Optional[str],
                               cu_seqlens: Optional[Tensor] = None) -> list[Tensor]:
    if q.device.type != "cpu":
        raise NotImplementedError(NO_BACKWARD)
    ws = (kq_pre, head_pre, kq_post, head_post, head_post_linear, gn_weight, gate_w, gate_b)
    w = dict(zip(WEIGHTS, ws))
    p = _problem(q, k, v, w, pad_key, layer_id, scale)
    if q.numel() == 0 and cu_seqlens is None:
        # an empty batch or sequence: empty gradients of q, k, v, zero ones of
        # the weights (float32 placeholders for absent ones, as below)
        return [torch.empty_like(q), torch.empty_like(k), torch.empty_like(v)] + \
            [torch.zeros_like(t) if t is not None else torch.empty(0, dtype=torch.float32)
             for t in ws]
    ctx = _lib.context("cpu", 0, db)
    W, keep = _weights_struct(w, layer_id)
    B, T, H, D = q.shape
    f32 = torch.float32
    o = torch.empty((B, T, H, D), dtype=f32)
    saved = torch.empty(_lib.saved_bytes(p, B, T) // 4, dtype=f32)
    dout = grad_o.to(f32).contiguous()
    outs = [torch.empty((B, T, H, D), dtype=f32), torch.empty(k.shape, dtype=f32),
            torch.empty(v.shape, dtype=f32)]
    outs += [torch.empty(t.shape, dtype=f32) if t is not None else torch.empty(0, dtype=f32)
             for t in ws]
    G = _lib.Grads()
    for name, t in zip(_lib.GRAD_NAMES, outs):
        if t.numel():
            setattr(G, name, _lib.float_ptr(t.data_ptr()))
    if cu_seqlens is None:
        _lib.backward_host(ctx, p, _tensor_struct(q), _tensor_struct(k), _tensor_struct(v), W,
                           _tensor_struct(o), saved.data_ptr(), _tensor_struct(dout), G)
    else:  # B = 1: saved_bytes(p, 1, total_T), the documents' states back to back
        _lib.backward_varlen_host(ctx, p, _tensor_struct(q), _tensor_struct(k),
                                  _tensor_struct(v), W, cu_seqlens.tolist(), _tensor_struct(o),
                                  saved.data_ptr(), _tensor_struct(dout), G)
    del keep
    ins = (q, k, v) + ws
    return [g.to(x.dtype) if x is not None and g.numel() else g for g, x in zip(outs, ins)]


@_mta_attention_backward_op.register_fake
def _mta_attention_backward_fake(grad_o, q, k, v, kq_pre, head_pre, kq_post, head_post,
                                 head_post_linear, gn_weight, gate_w, gate_b, pad_key,
                                 layer_id, scale, db, cu_seqlens=None):
    ws = (kq_pre, head_pre, kq_post, head_post, head_post_linear, gn_weight, gate_w, gate_b)
    # an absent weight's placeholder is float32, as the real operator's
    return [torch.empty_like(q), torch.empty_like(k), torch.empty_like(v)] + \
        [torch.empty_like(t) if t is not None else q.new_empty(0, dtype=torch.float32)
         for t in ws]


def _setup_context(ctx, inputs, output):
    # q, k, v, the weights and cu_seqlens (None for whole sequences)
    ctx.save_for_backward(*inputs[:11], inputs[15])
    ctx.rest = inputs[11:15]  # pad_key, layer_id, scale, db
    ctx.present = [t is not None for t in inputs[:11]]


def _backward(ctx, grad_o):
    saved = ctx.saved_tensors
    g = _mta_attention_backward_op(grad_o, *saved[:11], *ctx.rest, saved[11])
    grads = [gi if present else None for gi, present in zip(g, ctx.present)]
    return tuple(grads) + (None,) * (len(ctx.rest) + 1)


_mta_attention_op.register_autograd(_backward, setup_context=_setup_context)


def mta_attention(q: Tensor, k: Tensor, v: Tensor, *, kq_pre: Optional[Tensor] = None,
                  head_pre: Optional[Tensor] = None, kq_post: Optional[Tensor] = None,
                  head_post: Optional[Tensor] = None,
                  head_post_linear: Optional[Tensor] = None,
                  gn_weight: Optional[Tensor] = None, gate_w: Optional[Tensor] = None,
                  gate_b: Optional[Tensor] = None, pad_key: str = "both",
                  layer_id: Optional[int] = None, scale: Optional[float] = None,
                  db=None, cu_seqlens: Optional[Tensor] = None) -> Tensor:
    """Multi-Token Attention forward (MTA.md): o [B,T,H,D] in q's dtype.

    q [B,T,H,D]; k, v [B,T,Hkv,D] with H a multiple of Hkv; one dtype
    (float32, bfloat16 or float16), one device, the last dimension
    contiguous (other strides are free: views are read in place).
    Weights (any float dtype, used as float32), each turning on its part:
      kq_pre [H,1,cq,ck]      key-query convolution before softmax
      head_pre [H,H]          head mixing before softmax (nn.Linear weight)
      kq_post [H,1,cq2,ck2]   key-query convolution after softmax
      head_post [H/c,c,c]     head convolution after softmax, groups of c
      head_post_linear [H,H]  linear head mixing after softmax (instead)
      gn_weight [D]           RMS group norm per head (eps 1e-5)
      gate_w [1,D], gate_b [1] sigmoid gate per head output
    pad_key 'both' (ck odd), 'left' or 'right'; layer_id (with gn_weight)
    adds the layer rescale 1-(0.8-0.6*exp(-0.3*layer_id)); scale defaults
    to 1/sqrt(D); db is the database of tuned winners (default $MTATUNE_DB,
    else ~/.cache/mtatune/mta.db; a missing one means default variants).
    cu_seqlens (int32 or int64 [ndocs+1], CPU): packed documents, as
    FlashAttention's varlen API: q [1,total_T,H,D], k, v [1,total_T,Hkv,D],
    document d rows [cu[d], cu[d+1]), each attended and convolved alone;
    differentiable (each document's backward alone, the weights' gradients
    summed over documents); CPU tensors only.

    Bad input raises ValueError naming the tensor and what was expected; a
    failure inside the library raises MTAError. A kernel is compiled on the
    first call of each problem (cached on disk, $MTATUNE_CACHE)."""
    if db is not None and not isinstance(db, str):
        db = os.fspath(db)
    weights = {"kq_pre": kq_pre, "head_pre": head_pre, "kq_post": kq_post,
               "head_post": head_post, "head_post_linear": head_post_linear,
               "gn_weight": gn_weight, "gate_w": gate_w, "gate_b": gate_b}
    _check_args(q, k, v, weights, pad_key, layer_id, scale, db)
    if cu_seqlens is not None:
        _check_cu_seqlens(q, cu_seqlens)
    return _mta_attention_op(q, k, v, kq_pre, head_pre, kq_post, head_post,
                             head_post_linear, gn_weight, gate_w, gate_b, pad_key,
                             None if layer_id is None else int(layer_id),
                             None if scale is None else float(scale), db, cu_seqlens)


def problem_key(q: Tensor, k: Tensor, v: Tensor, **kw) -> str:
    """The canonical problem key mta_attention(q, k, v, **kw) runs, e.g.
    'h16kv16d96-pre6x11-hpre-post6x11-hc16-both-gn-gate-bf16': the --problem
    of `mtatune tune` that makes a winner for it (tensors may be on any
    device, or meta: only shapes and dtypes count)."""
    weights = {n: kw.pop(n, None) for n in WEIGHTS}
    pad_key, layer_id, scale = kw.pop("pad_key", "both"), kw.pop("layer_id", None), \
        kw.pop("scale", None)
    kw.pop("db", None)
    if kw:
        raise TypeError(f"problem_key: unexpected arguments {sorted(kw)}")
    _check_args(q, k, v, weights, pad_key, layer_id, scale, None)
    return _lib.problem_key(_problem(q, k, v, weights, pad_key, layer_id, scale))


# ---- the module -------------------------------------------------------------
class RMSNormWeight(nn.Module):
    """Holds the group norm's weight [D] under the reference's name
    (subln.weight); the norm itself runs inside mta_attention."""

    def __init__(self, dim, device=None, dtype=None):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(dim, device=device, dtype=dtype))

    def extra_repr(self):
        return f"dim={self.weight.shape[0]}, eps=1e-05"


class MTAttention(nn.Module):
    """The Multi-Token Attention part of the paper's reference attention
    layer (facebookresearch/RAM, projects/mta/mta_transformer.py, class
    Attention with use_mta and triton off): everything between the
    projected, rotary-embedded q, k, v and the output projection.

    Parameters carry the reference's names and shapes, so the MTA part of a
    reference checkpoint loads into it (load_reference_state_dict):
      mta_kernel [H,1,cq,ck]            query_kernel_size, key_kernel_size
      wpsm.weight [H,H]                 pre_sm_linear_head
      mta_kernel_after_sm [H,1,cq2,ck2] after_sm_query/key_kernel_size
      head_kernel [H/c,c,c]             head_kernel_size = c
      wposm.weight [H,H]                post_sm_linear_head
      subln.weight [D]                  group_norm (layer_norm_rescale: with
                                        layer_id, the layer's index)
      gate.weight [1,D], gate.bias [1]  add_gating (gate_1d)
    The constructor's keywords are the reference's MTATransformerArgs names;
    a kernel size left None means no such part (the reference's default of
    1 x 1 for the pre-softmax kernel must be given explicitly). Not covered:
    the projections wq, wk, wv, wo and rotary embeddings (the caller's),
    dropout, gate_1d=False, the reference's Triton variant (its parameters
    live under triton_mta.*), and generation's chunked masks.

    forward(q, k, v): q [B,T,H,D], k, v [B,T,Hkv,D] -> [B,T,H,D], see
    mta_attention. Parameters start as the reference's init_method
    'identity' (the module then computes causal softmax attention, then
    the norm and gate): reset_parameters()."""

    def __init__(self, n_heads, head_dim, n_kv_heads=None, *, query_kernel_size=None,
                 key_kernel_size=None, pre_sm_linear_head=False,
                 after_sm_query_kernel_size=None, after_sm_key_kernel_size=None,
                 head_kernel_size=None, post_sm_linear_head=False, pad_key="both",
                 group_norm=False, layer_norm_rescale=False, layer_id=None,
                 add_gating=False, scale=None, db=None, device=None, dtype=None):
        super().__init__()
        H, D = int(n_heads), int(head_dim)
        Hkv = H if n_kv_heads is None else int(n_kv_heads)
        if H < 1 or D < 1 or Hkv < 1 or H % Hkv:
            raise ValueError(f"MTAttention: n_heads={n_heads}, n_kv_heads={n_kv_heads}, "
                             f"head_dim={head_dim}: expected positive sizes, n_heads a "
                             "multiple of n_kv_heads")
        if pad_key not in _lib.PADS:
            raise ValueError(f"MTAttention: pad_key is {pad_key!r}: expected 'both', "
                             "'left' or 'right'")
        self.n_heads, self.n_kv_heads, self.head_dim = H, Hkv, D
        self.pad_key, self.scale, self.db = pad_key, scale, db
        fk = {"device": device, "dtype": dtype}

        def kernel(name, cq, ck):
            if (cq is None) != (ck is None):
                raise ValueError(f"MTAttention: {name}: give both the query and the key "
                                 f"kernel size, or neither (got {cq}, {ck})")
            if cq is None:
                self.register_parameter(name, None)
            else:
                self.register_parameter(name, nn.Parameter(torch.empty(H, 1, int(cq),
                                                                        int(ck), **fk)))

        kernel("mta_kernel", query_kernel_size, key_kernel_size)
        kernel("mta_kernel_after_sm", after_sm_query_kernel_size, after_sm_key_kernel_size)
        self.wpsm = nn.Linear(H, H, bias=False, **fk) if pre_sm_linear_head else None
        if head_kernel_size is not None and post_sm_linear_head:
            raise ValueError("MTAttention: head_kernel_size and post_sm_linear_head exclude "
                             "each other (one post-softmax head mixing)")
        if head_kernel_size is not None:
            c = int(head_kernel_size)
            if c < 1 or H % c:
                raise ValueError(f"MTAttention: head_kernel_size={c} must divide "
                                 f"n_heads={H}")
            self.head_kernel = nn.Parameter(torch.empty(H // c, c, c, **fk))
        else:
            self.register_parameter("head_kernel", None)
        self.wposm = nn.Linear(H, H, bias=False, **fk) if post_sm_linear_head else None
        self.subln = RMSNormWeight(D, **fk) if group_norm else None
        if layer_norm_rescale and (not group_norm or layer_id is None):
            raise ValueError("MTAttention: layer_norm_rescale needs group_norm=True and "
                             "layer_id (the layer's index)")
        self.layer_norm_rescale = bool(layer_norm_rescale)
        self.layer_id = layer_id
        self.gate = nn.Linear(D, 1, **fk) if add_gating else None
        self.reset_parameters()

    @torch.no_grad()
    def reset_parameters(self):
        """The reference's 'identity' initialisation: each convolution passes
        its centre tap (current query, current key), the head mixings are
        identities, the norm's weight is ones; the gate's weight is a
        truncated normal of std head_dim**-0.5 and its bias zero."""
        ok = {"both": None, "left": -1, "right": 0}[self.pad_key]
        for kern in (self.mta_kernel, self.mta_kernel_after_sm):
            if kern is not None:
                kern.zero_()
                ck = kern.shape[3]
                kern[:, :, -1, (ck - 1) // 2 if ok is None else ok % ck] = 1.0
        for lin in (self.wpsm, self.wposm):
            if lin is not None:
                lin.weight.copy_(torch.eye(self.n_heads))
        if self.head_kernel is not None:
            self.head_kernel.copy_(torch.eye(self.head_kernel.shape[1]).expand_as(
                self.head_kernel))
        if self.subln is not None:
            self.subln.weight.fill_(1.0)
        if self.gate is not None:
            std = self.head_dim ** -0.5
            nn.init.trunc_normal_(self.gate.weight, std=std, a=-3 * std, b=3 * std)
            self.gate.bias.zero_()

    def weights(self):
        """The keyword arguments of mta_attention this module passes."""
        return {
            "kq_pre": self.mta_kernel,
            "head_pre": None if self.wpsm is None else self.wpsm.weight,
            "kq_post": self.mta_kernel_after_sm,
            "head_post": self.head_kernel,
            "head_post_linear": None if self.wposm is None else self.wposm.weight,
            "gn_weight": None if self.subln is None else self.subln.weight,
            "gate_w": None if self.gate is None else self.gate.weight,
            "gate_b": None if self.gate is None else self.gate.bias,
        }

    def forward(self, q, k, v):
        return mta_attention(q, k, v, **self.weights(), pad_key=self.pad_key,
                             layer_id=self.layer_id if self.layer_norm_rescale else None,
                             scale=self.scale, db=self.db)

    # The keys of a reference attention layer that are not MTA parameters.
    PROJECTIONS = ("wq.weight", "wk.weight", "wv.weight", "wo.weight")

    def load_reference_state_dict(self, state_dict, prefix=""):
        """Load the MTA parameters of one attention layer of a reference
        checkpoint. prefix selects the layer (e.g. 'layers.3.attention.');
        keys outside it are not looked at. Under it, the projections
        (wq, wk, wv, wo) are skipped and returned; any other key that is
        not one of this module's parameters, and any parameter missing, is
        an error (the module's configuration does not match the layer's)."""
        mine = set(self.state_dict().keys())
        sub = {key[len(prefix):]: t for key, t in state_dict.items() if key.startswith(prefix)}
        skipped = sorted(prefix + key for key in sub if key in self.PROJECTIONS)
        unknown = sorted(prefix + key for key in sub if key not in mine and
                         key not in self.PROJECTIONS)
        missing = sorted(prefix + key for key in mine if key not in sub)
        if unknown or missing:
            raise ValueError("MTAttention.load_reference_state_dict: the checkpoint's layer "
                             "does not match this module's configuration: " +
                             "; ".join(x for x in (
                                 f"not parameters of this module: {unknown}" if unknown else "",
                                 f"missing from the checkpoint: {missing}" if missing else "")
                                 if x))
        self.load_state_dict({key: t for key, t in sub.items() if key in mine}, strict=True)
        return skipped

    def extra_repr(self):
        parts = [f"n_heads={self.n_heads}", f"n_kv_heads={self.n_kv_heads}",
                 f"head_dim={self.head_dim}", f"pad_key={self.pad_key!r}"]
        if self.layer_norm_rescale:
            parts.append(f"layer_id={self.layer_id}")
        if self.scale is not None:
            parts.append(f"scale={self.scale}")
        return ", ".join(parts)


class DecodeCache:
    """Incremental decode (mta.h, mta_decode): a cache of `batch` sequences
    holding k, v and only the rows the convolutions reach back to, on the
    CPU backend's generated decode kernel.

        cache = DecodeCache(batch, kq_pre=w_pre, head_pre=w_head, ...)
        o = cache.append(q, k, v)            # q [B,Tn,H,D]: Tn new tokens each
        o = cache.append(q1, k1, v1, n_new=[1, 0, 1])  # ragged: who advances

    The output row of each new token equals that row of mta_attention over
    the whole sequence so far. The problem is fixed by the first append
    (shapes, dtype and the weights given here); every later append must
    match it. Rows past n_new[b] of sequence b are neither read nor written
    (they come back as zeros). CPU tensors only; no autograd."""

    def __init__(self, batch, *, kq_pre=None, head_pre=None, kq_post=None, head_post=None,
                 head_post_linear=None, gn_weight=None, gate_w=None, gate_b=None,
                 pad_key="both", layer_id=None, scale=None, db=None):
        if isinstance(batch, bool) or not isinstance(batch, numbers.Integral) or batch < 1:
            raise ValueError(f"DecodeCache: batch must be a positive int, not {batch!r}")
        if batch > 1 << 20:  # the library's limit (mta_cache_create), said up front
            raise ValueError(f"DecodeCache: batch is {batch}: at most {1 << 20} sequences")
        self.batch = int(batch)
        self._w = {"kq_pre": kq_pre, "head_pre": head_pre, "kq_post": kq_post,
                   "head_post": head_post, "head_post_linear": head_post_linear,
                   "gn_weight": gn_weight, "gate_w": gate_w, "gate_b": gate_b}
        self._pad, self._layer, self._scale = pad_key, layer_id, scale
        self._db = None if db is None else os.fspath(db)
        self._cache = self._p = self._W = self._keep = None

    def seqlens(self):
        """Each sequence's length so far (cache_seqlens), as a list of ints."""
        return [0] * self.batch if self._cache is None else self._cache.seqlens()

    def reset(self, b):
        """Empty sequence b (0 <= b < batch)."""
        if isinstance(b, bool) or not isinstance(b, numbers.Integral) or not 0 <= b < self.batch:
            raise ValueError(f"DecodeCache.reset: b is {b!r}: expected a sequence index in "
                             f"0..{self.batch - 1}")
        if self._cache is not None:
            self._cache.reset(int(b))

    def append(self, q, k, v, n_new=None):
        """Append tokens and return their outputs [B,Tn,H,D] in q's dtype."""
        with torch.no_grad():
            _check_args(q, k, v, self._w, self._pad, self._layer, self._scale, self._db)
            for name, t in (("q", q), ("k", k), ("v", v)):
                if t.device.type != "cpu":
                    raise NotImplementedError(f"DecodeCache: {name} is on {t.device}; decode "
                                              "runs on CPU tensors only for now")
            if q.shape[0] != self.batch:
                raise ValueError(f"DecodeCache.append: q has B={int(q.shape[0])}, the cache "
                                 f"holds {self.batch} sequences")
            if n_new is not None and len(n_new) != self.batch:
                raise ValueError(f"DecodeCache.append: n_new has {len(n_new)} entries, "
                                 f"expected {self.batch}")
            p = _problem(q, k, v, self._w, self._pad, self._layer, self._scale)
            if self._cache is None:
                ctx = _lib.context("cpu", 0, self._db)
                self._cache = _lib.Cache(ctx, p, self.batch)
                self._p = p
                self._W, self._keep = _weights_struct(self._w, self._layer)
            elif _lib.problem_key(p) != _lib.problem_key(self._p):
                raise ValueError(f"DecodeCache.append: the tokens make problem "
                                 f"{_lib.problem_key(p)}, but this cache holds "
                                 f"{_lib.problem_key(self._p)}")
            o = torch.zeros(q.shape, dtype=torch.float32)
            if _poison_output:
                o.fill_(float("nan"))
                for b in range(self.batch):
                    if n_new is not None:
                        o[b, int(n_new[b]):] = 0
            self._cache.decode(_tensor_struct(q), _tensor_struct(k), _tensor_struct(v),
                               self._W, n_new, _tensor_struct(o))
            return o if q.dtype == torch.float32 else o.to(q.dtype)
