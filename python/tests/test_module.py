"""test_module.py: MTAttention: the reference's parameter names and shapes,
loading a reference layer's state dict, the state-dict round trip, the
identity initialisation."""
import io
import math

import torch
import torch.nn.functional as F

import mtatune.torch as mt
from mta_reference import mta_forward
from util import check, gen, qkv, require, test, uniform

B, T, H, D = 2, 37, 4, 16
# The f32_all problem of test_forward (same kernel): the paper's parts.
FULL = dict(query_kernel_size=6, key_kernel_size=11, pre_sm_linear_head=True,
            after_sm_query_kernel_size=6, after_sm_key_kernel_size=11, head_kernel_size=4,
            group_norm=True, add_gating=True)
# Names and shapes of the reference's parameters (mta_transformer.py, Attention).
REFERENCE_SHAPES = {
    "mta_kernel": (H, 1, 6, 11), "wpsm.weight": (H, H),
    "mta_kernel_after_sm": (H, 1, 6, 11), "head_kernel": (1, 4, 4),
    "subln.weight": (D,), "gate.weight": (1, D), "gate.bias": (1,),
}


def reference_layer(g, prefix):
    """A state dict as a reference checkpoint holds one attention layer:
    projections and MTA parameters under prefix, random values."""
    sd = {prefix + n: uniform(g, s, 0.3) for n, s in REFERENCE_SHAPES.items()}
    dim = H * D
    for n in ("wq", "wk", "wv", "wo"):
        sd[f"{prefix}{n}.weight"] = uniform(g, (dim, dim), dim ** -0.5)
    return sd


@test
def test_parameter_names_and_shapes():
    m = mt.MTAttention(H, D, **FULL)
    got = {n: tuple(t.shape) for n, t in m.state_dict().items()}
    require(got == REFERENCE_SHAPES, f"state dict {got}, expected {REFERENCE_SHAPES}")
    m = mt.MTAttention(8, D, 2, post_sm_linear_head=True, group_norm=True)
    got = {n: tuple(t.shape) for n, t in m.state_dict().items()}
    require(got == {"wposm.weight": (8, 8), "subln.weight": (D,)}, f"state dict {got}")


@test
def test_load_reference_layer():
    g = gen("reference-layer")
    sd = reference_layer(g, "layers.2.attention.")
    sd.update(reference_layer(g, "layers.1.attention."))  # another layer, not taken
    sd["tok_embeddings.weight"] = uniform(g, (10, H * D))
    m = mt.MTAttention(H, D, **FULL)
    skipped = m.load_reference_state_dict(sd, prefix="layers.2.attention.")
    require(skipped == sorted(f"layers.2.attention.{n}.weight" for n in ("wq", "wk", "wv", "wo")),
            f"skipped {skipped}")
    for n, t in m.state_dict().items():
        require(torch.equal(t, sd["layers.2.attention." + n]), f"{n} not loaded")
    q, k, v = qkv(g, B, T, H, H, D, torch.float32)
    o = m(q, k, v)
    p = lambda n: sd["layers.2.attention." + n]
    e = mta_forward(q, k, v, kq_pre=p("mta_kernel"), head_pre=p("wpsm.weight"),
                    kq_post=p("mta_kernel_after_sm"), head_post=p("head_kernel"),
                    gn_weight=p("subln.weight"), gate_w=p("gate.weight"), gate_b=p("gate.bias"))
    check(o, e, torch.float32, "reference layer")
    # a module configured differently refuses the layer, naming the keys
    other = mt.MTAttention(H, D, query_kernel_size=6, key_kernel_size=11, group_norm=True)
    try:
        other.load_reference_state_dict(sd, prefix="layers.2.attention.")
    except ValueError as err:
        require("layers.2.attention.wpsm.weight" in str(err), f"message: {err}")
    else:
        raise AssertionError("a mismatched layer loaded")
    try:
        m.load_reference_state_dict(sd, prefix="layers.7.attention.")
    except ValueError as err:
        require("missing" in str(err) and "layers.7.attention.mta_kernel" in str(err), str(err))
    else:
        raise AssertionError("an absent layer loaded")


@test
def test_state_dict_round_trip():
    g = gen("round-trip")
    m = mt.MTAttention(H, D, **FULL)
    with torch.no_grad():
        for t in m.parameters():
            t.copy_(uniform(g, t.shape, 0.3))
    buf = io.BytesIO()
    torch.save(m.state_dict(), buf)
    buf.seek(0)
    m2 = mt.MTAttention(H, D, **FULL)
    m2.load_state_dict(torch.load(buf))
    q, k, v = qkv(g, B, T, H, H, D, torch.float32)
    with torch.no_grad():
        o1, o2 = m(q, k, v), m2(q, k, v)
    require(torch.equal(o1, o2), "outputs differ after the round trip")
    w = {n: t for n, t in m.weights().items()}
    check(o1, mta_forward(q, k, v, **w), torch.float32, "round trip")


@test
def test_identity_init_is_causal_attention():
    """A fresh module (the reference's 'identity' init) computes causal
    softmax attention, then the norm (weight 1) and the gate: checked
    against PyTorch's own scaled_dot_product_attention."""
    g = gen("identity")
    m = mt.MTAttention(H, D, **FULL)
    q, k, v = qkv(g, B, T, H, H, D, torch.float32)
    with torch.no_grad():
        o = m(q, k, v)
        a = F.scaled_dot_product_attention(*(x.double().transpose(1, 2) for x in (q, k, v)),
                                           is_causal=True).transpose(1, 2)
        a = a * torch.rsqrt(a.pow(2).mean(-1, keepdim=True) + 1e-5)
        a = a * torch.sigmoid(a @ m.gate.weight.double()[0] + m.gate.bias.double()[0])[..., None]
    check(o, a, torch.float32, "identity init")
    # and with every pad_key the centre tap is the current key
    for pad in ("left", "right"):
        m = mt.MTAttention(H, D, query_kernel_size=2, key_kernel_size=4, pad_key=pad)
        e = mta_forward(q, k, v, kq_pre=m.mta_kernel, pad_key=pad)
        a = F.scaled_dot_product_attention(*(x.double().transpose(1, 2) for x in (q, k, v)),
                                           is_causal=True).transpose(1, 2)
        rel = float((e - a).norm() / a.norm())
        require(rel < 1e-12, f"pad {pad}: identity kernel is not the identity ({rel:.3g})")


@test
def test_module_layer_rescale_and_gqa():
    g = gen("module-gqa")
    m = mt.MTAttention(4, 16, 2, query_kernel_size=3, key_kernel_size=5,
                       post_sm_linear_head=True)
    with torch.no_grad():
        for t in m.parameters():
            t.copy_(uniform(g, t.shape, 0.3))
    q, k, v = qkv(g, B, T, 4, 2, 16, torch.float32)
    with torch.no_grad():
        o = m(q, k, v)
    e = mta_forward(q, k, v, kq_pre=m.mta_kernel, head_post_linear=m.wposm.weight)
    check(o, e, torch.float32, "GQA module")  # the f32_gqa problem's kernel
    m = mt.MTAttention(4, 16, group_norm=True, layer_norm_rescale=True, layer_id=5)
    with torch.no_grad():
        m.subln.weight.copy_(uniform(g, (16,)))
        o = m(q[:, :, :4], q[:, :, :4], v[:, :, :1].expand(B, T, 4, 16))
    e = mta_forward(q[:, :, :4], q[:, :, :4], v[:, :, :1].expand(B, T, 4, 16),
                    gn_weight=m.subln.weight, layer_id=5)
    check(o, e, torch.float32, "layer rescale module")  # the f32_gn_layer_rescale kernel
    require(abs(1 - (0.8 - 0.6 * math.exp(-1.5)) - float(mt._lib.layer_rescale(5))) < 1e-12,
            "layer rescale factor")
