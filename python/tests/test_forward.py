"""test_forward.py: mta_attention against the float64 PyTorch reference, on
fresh random inputs, for each part of MTA alone and together, GQA, every
pad_key, the layer rescale, a given scale, and f32, bf16 and f16 inputs.

Each case is one problem (one kernel compile, cached in $MTATUNE_CACHE), so
the cases combine options where that keeps every option covered: every
part alone in f32; all together in each dtype."""
import torch

import mtatune.torch as mt
from mta_reference import mta_forward
from util import check, gen, qkv, require, test, uniform, weights

# Every output is poisoned (NaN) before the kernel writes it.
mt._poison_output = True

B, T = 2, 37

# name: (H, Hkv, D, dtype, parts for util.weights, pad_key, layer_id, scale)
CASES = {
    "f32_plain": (4, 4, 16, torch.float32, {}, "both", None, None),
    "f32_kq_pre": (4, 4, 16, torch.float32, {"kq_pre": (3, 5)}, "both", None, None),
    "f32_head_pre": (4, 4, 16, torch.float32, {"head_pre": True}, "both", None, None),
    "f32_kq_post": (4, 4, 16, torch.float32, {"kq_post": (2, 3)}, "both", None, None),
    "f32_head_post": (4, 4, 16, torch.float32, {"head_post": 2}, "both", None, None),
    "f32_head_post_linear": (4, 4, 16, torch.float32, {"head_post_linear": True}, "both",
                             None, None),
    "f32_gn": (4, 4, 16, torch.float32, {"gn": True}, "both", None, None),
    "f32_gn_layer_rescale": (4, 4, 16, torch.float32, {"gn": True}, "both", 5, None),
    "f32_gate": (4, 4, 16, torch.float32, {"gate": True}, "both", None, None),
    "f32_scale": (4, 4, 16, torch.float32, {}, "both", None, 0.37),
    "f32_gqa": (4, 2, 16, torch.float32, {"kq_pre": (3, 5), "head_post_linear": True},
                "both", None, None),
    "f32_pad_left": (4, 4, 16, torch.float32, {"kq_pre": (2, 4), "kq_post": (3, 2)}, "left",
                     None, None),
    "f32_pad_right": (4, 4, 16, torch.float32, {"kq_pre": (3, 2), "kq_post": (2, 4)},
                      "right", None, None),
    # the paper's configuration at a small size (the golden dev-full problem)
    "f32_all": (4, 4, 16, torch.float32, {"kq_pre": (6, 11), "head_pre": True,
                                          "kq_post": (6, 11), "head_post": 4, "gn": True,
                                          "gate": True}, "both", None, None),
    "bf16_plain": (4, 4, 16, torch.bfloat16, {}, "both", None, None),
    "bf16_all": (4, 1, 16, torch.bfloat16, {"kq_pre": (3, 4), "head_pre": True,
                                            "kq_post": (2, 5), "head_post": 2, "gn": True,
                                            "gate": True}, "left", 3, None),
    "f16_plain": (4, 4, 16, torch.float16, {}, "both", None, None),
    "f16_all": (4, 2, 16, torch.float16, {"kq_pre": (2, 4), "head_pre": True,
                                          "kq_post": (3, 2), "head_post_linear": True,
                                          "gn": True, "gate": True}, "right", 0, 0.2),
}


def run_case(name, strided=False):
    H, Hkv, D, dtype, parts, pad_key, layer_id, scale = CASES[name]
    g = gen(name)
    q, k, v = qkv(g, B, T, H, Hkv, D, dtype)
    if strided:
        # q, k, v as views of [B+1, heads, T, D] storage: batch offset,
        # heads before time; the binding must read them in place.
        def view(x):
            big = torch.empty(B + 1, x.shape[2], T, D, dtype=dtype)
            big[1:] = x.transpose(1, 2)
            return big[1:].transpose(1, 2)
        q, k, v = view(q), view(k), view(v)
        require(not q.is_contiguous() and q.storage_offset() > 0, "views are not strided")
    w = weights(g, H, D, **parts)
    saved = [t.clone() for t in (q, k, v)]
    o = mt.mta_attention(q, k, v, **w, pad_key=pad_key, layer_id=layer_id, scale=scale)
    require(o.dtype == dtype and tuple(o.shape) == (B, T, H, D) and o.is_contiguous(),
            f"output {o.dtype} {tuple(o.shape)} contiguous={o.is_contiguous()}, expected "
            f"{dtype} {(B, T, H, D)} contiguous")
    for a, b_, n in zip((q, k, v), saved, "qkv"):
        require(torch.equal(a, b_), f"{n} was modified")
    e = mta_forward(q, k, v, **w, pad_key=pad_key, layer_id=layer_id, scale=scale)
    check(o, e, dtype, name)
    return o


def _make(name):
    def fn():
        run_case(name)
    fn.__name__ = "test_" + name
    fn.__module__ = __name__
    return test(fn)


for _name in CASES:
    _make(_name)


@test
def test_f32_all_strided_views():
    run_case("f32_all", strided=True)


@test
def test_bf16_all_strided_views():
    run_case("bf16_all", strided=True)


@test
def test_check_is_not_vacuous():
    """The comparison used above refuses a slightly wrong output: one
    element off, a uniform 1e-3 error in f32, a NaN."""
    g = gen("vacuous")
    e = torch.randn(2, 5, 4, 8, generator=g, dtype=torch.float64)
    o = e.clone().float()
    from util import compare
    require(compare(o, e, torch.float32)[0], "exact output refused")
    bad = o.clone()
    bad[1, 2, 3, 4] += 0.5
    require(not compare(bad, e, torch.float32)[0], "one wrong element passed")
    require(not compare(o * (1 + 1e-3), e, torch.float32)[0], "1e-3 relative error passed")
    bad = o.clone()
    bad[0, 0, 0, 0] = float("nan")
    require(not compare(bad, e, torch.bfloat16)[0], "NaN passed")


@test
def test_autograd_through_the_forward():
    H, Hkv, D, dtype, parts, pad_key, layer_id, scale = CASES["f32_plain"]
    q, k, v = qkv(gen("autograd"), B, T, H, Hkv, D, dtype)
    q.requires_grad_(True)
    o = mt.mta_attention(q, k, v)
    require(o.requires_grad, "output does not require grad")
    check(o, mta_forward(q, k, v), dtype, "forward with requires_grad")
    o.sum().backward()  # test_backward.py checks the values
    require(q.grad is not None and q.grad.shape == q.shape, "no dL/dq")
    with torch.no_grad():
        require(not mt.mta_attention(q, k, v).requires_grad, "no_grad output requires grad")


@test
def test_problem_key():
    H, Hkv, D, dtype, parts, pad_key, layer_id, scale = CASES["f32_all"]
    q, k, v = (torch.empty(B, T, h, D, dtype=dtype, device="meta") for h in (H, Hkv, Hkv))
    w = {n: t.to("meta") for n, t in weights(gen("key"), H, D, **parts).items()}
    key = mt.problem_key(q, k, v, **w)
    require(key == "h4kv4d16-pre6x11-hpre-post6x11-hc4-both-gn-gate-f32", key)
    H, Hkv, D, dtype, parts, pad_key, layer_id, scale = CASES["f16_all"]
    q, k, v = (torch.empty(1, 3, h, D, dtype=dtype) for h in (H, Hkv, Hkv))
    w = weights(gen("key"), H, D, **parts)
    key = mt.problem_key(q, k, v, **w, pad_key=pad_key, layer_id=layer_id, scale=scale)
    require(key == "h4kv2d16-pre2x4-hpre-post3x2-hpost-right-gnr-gate-s0.200000003-f16", key)


@test
def test_head_dim_one_views():
    """D = 1 views that PyTorch calls contiguous whatever their stride along D
    (a transposed [B,T,1,H] tensor: stride H along its size-1 D) run, and
    equal the reference (the library was handed the meaningless stride and
    refused it)."""
    g = gen("d1")
    B, T, H = 2, 9, 3
    x = [uniform(g, (B, T, 1, H)).transpose(2, 3) for _ in range(3)]
    require(all(t.is_contiguous() and t.stride(3) != 1 for t in x),
            "the views are not what the test needs")
    kq = uniform(g, (H, 1, 2, 3), 0.5)
    o = mt.mta_attention(*x, kq_pre=kq)
    check(o, mta_forward(*x, kq_pre=kq), torch.float32, "D=1 views")
