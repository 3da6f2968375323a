"""test_backward.py: autograd through mta_attention on the CPU (the library's
generated backward, templates/mta_cpu_bwd.c) against torch.autograd of the
float64 PyTorch reference (mta_reference.py), on fresh random inputs, for
every gradient the problem has, under the library's gradient bounds
(mta_compare_grad's numbers)."""
import torch

import mtatune.torch as mt
from mta_reference import mta_forward
from util import compare, gate_magnitudes, gen, qkv, require, test, weights

B, T = 2, 29

# name: (H, Hkv, D, dtype, parts, pad_key, layer_id, scale)
CASES = {
    "f32_all": (4, 2, 16, torch.float32, {"kq_pre": (3, 5), "head_pre": True,
                                          "kq_post": (2, 3), "head_post": 2, "gn": True,
                                          "gate": True}, "both", 3, None),
    "f32_linear_left": (3, 3, 8, torch.float32, {"kq_pre": (2, 4), "kq_post": (3, 2),
                                                 "head_post_linear": True, "gate": True},
                        "left", None, 0.3),
    "f32_plain_right": (2, 1, 8, torch.float32, {"kq_pre": (2, 2)}, "right", None, None),
    "bf16_all": (4, 4, 16, torch.bfloat16, {"kq_pre": (3, 3), "head_pre": True,
                                            "kq_post": (2, 3), "head_post_linear": True,
                                            "gn": True, "gate": True}, "both", None, None),
}


def run_case(name):
    H, Hkv, D, dtype, parts, pad_key, layer_id, scale = CASES[name]
    g = gen("bwd_" + name)
    q, k, v = qkv(g, B, T, H, Hkv, D, dtype)
    w = weights(g, H, D, **parts)
    # dL/do in the output's dtype (what autograd hands the operator), the
    # reference taking the same values: both differentiate the same loss
    dout = torch.randn(B, T, H, D, generator=g, dtype=torch.float64).to(dtype).to(torch.float64)
    # ours: leaves of the given dtype (weights float32), autograd through the operator
    ins = {"q": q, "k": k, "v": v, **w}
    ours = {n: t.detach().clone().requires_grad_(True) for n, t in ins.items()}
    o = mt.mta_attention(ours["q"], ours["k"], ours["v"], pad_key=pad_key, layer_id=layer_id,
                         scale=scale, **{n: ours[n] for n in w})
    o.backward(dout.to(o.dtype))
    # the reference: the same values in float64
    ref = {n: t.detach().to(torch.float64).requires_grad_(True) for n, t in ins.items()}
    taps = {}
    e = mta_forward(ref["q"], ref["k"], ref["v"], pad_key=pad_key, layer_id=layer_id,
                    scale=scale, taps=taps, **{n: ref[n] for n in w})
    e.backward(dout)
    mags = gate_magnitudes(taps, dout)
    for n in ins:
        got = ours[n].grad
        require(got is not None, f"{name}: no gradient for {n}")
        require(got.shape == ins[n].shape and got.dtype == ins[n].dtype,
                f"{name}: d{n} has shape {tuple(got.shape)} {got.dtype}")
        # bf16 gradients of q, k, v are rounded to bf16 on the way out: judge under
        # bf16's bounds; the weights' (float32) under the problem's dtype too
        ok, msg = compare(got, ref[n].grad, dtype, grad=True, mag=mags.get(n))
        require(ok, f"{name}: d{n}: {msg}")


@test
def test_backward_f32_every_option():
    run_case("f32_all")


@test
def test_backward_f32_linear_pad_left_scale():
    run_case("f32_linear_left")


@test
def test_backward_f32_gqa_pad_right():
    run_case("f32_plain_right")


@test
def test_backward_bf16():
    run_case("bf16_all")


@test
def test_backward_cuda_says_no_backward():
    # the message the CUDA path raises is the library's plain statement
    require("no CUDA backward" in mt.NO_BACKWARD and "forward-only" in mt.NO_BACKWARD,
            mt.NO_BACKWARD)


@test
def test_backward_compare_judges_cancelling_sums_by_their_terms():
    # the gate bias gradient that failed a correct C kernel: terms of total
    # magnitude 90.8 summing to -0.006, the kernel 8e-7 off (1e-8 of them)
    e = torch.tensor([-0.00606925], dtype=torch.float64)
    mag = torch.tensor([90.7649], dtype=torch.float64)
    o = torch.tensor([-0.00607005], dtype=torch.float32)
    require(not compare(o, e, torch.float32, grad=True)[0], "judged on |e| it fails")
    ok, msg = compare(o, e, torch.float32, grad=True, mag=mag)
    require(ok, msg)
    # one term in a thousand missing fails; NaN fails
    require(not compare(e + mag / 1000, e, torch.float32, grad=True, mag=mag)[0], "1e-3 passed")
    require(not compare(torch.tensor([float("nan")]), e, torch.float32, grad=True, mag=mag)[0],
            "NaN passed")


@test
def test_empty_batch_and_sequence():
    """B = 0 or T = 0: an empty output of q's shape and dtype, as PyTorch's
    attention gives (it was a ValueError), and a backward through it: empty
    gradients of q, k, v, zero ones of the weights."""
    g = gen("empty")
    w = weights(g, 4, 8, kq_pre=(3, 5), head_pre=True, gn=True, gate=True)
    for shape in ((0, 5), (2, 0)):
        for dtype in (torch.float32, torch.bfloat16):
            q, k, v = (t.requires_grad_(True) for t in qkv(g, *shape, 4, 2, 8, dtype))
            ws = {n: t.clone().requires_grad_(True) for n, t in w.items()}
            o = mt.mta_attention(q, k, v, layer_id=1, **ws)
            require(o.shape == q.shape and o.dtype == dtype and o.requires_grad,
                    f"{shape} {dtype}: output {tuple(o.shape)} {o.dtype}")
            o.float().sum().backward()
            for name, t in (("q", q), ("k", k), ("v", v)):
                require(t.grad is not None and t.grad.shape == t.shape,
                        f"{shape} {dtype}: d{name} {None if t.grad is None else t.grad.shape}")
            for name, t in ws.items():
                require(t.grad is not None and t.grad.shape == t.shape and
                        not t.grad.any(), f"{shape} {dtype}: d{name} is not zeros")
