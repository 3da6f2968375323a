"""test_badinput.py: every kind of bad input raises ValueError naming the
tensor (or argument) and what was expected; nothing is computed. A failure
inside the library (here: a database that is not one) raises MTAError."""
import os

import torch

import mtatune.torch as mt
from util import require, test

B, T, H, Hkv, D = 2, 9, 4, 2, 8


def good():
    g = torch.Generator().manual_seed(1)
    r = lambda *s: torch.rand(s, generator=g) + 0.5
    return dict(q=r(B, T, H, D), k=r(B, T, Hkv, D), v=r(B, T, Hkv, D))


def expect(fn, exc, *words):
    try:
        fn()
    except exc as e:
        msg = str(e)
        for w in words:
            require(w in msg, f"message {msg!r} lacks {w!r}")
        return msg
    except Exception as e:
        raise AssertionError(f"raised {type(e).__name__}: {e}, expected {exc.__name__}")
    raise AssertionError(f"no {exc.__name__} raised")


def call(**over):
    a = good()
    a.update(over)
    q, k, v = a.pop("q"), a.pop("k"), a.pop("v")
    return lambda: mt.mta_attention(q, k, v, **a)


# name: (overrides of good() and keywords, words the ValueError must hold)
CASES = {
    "q_not_a_tensor": (dict(q=[[1.0]]), ["q must be a torch.Tensor", "list"]),
    "q_3d": (dict(q=torch.rand(T, H, D)), ["q has shape [9,4,8]", "expected 4 dimensions"]),
    "k_5d": (dict(k=torch.rand(1, B, T, Hkv, D)), ["k has shape", "expected 4 dimensions"]),
    "q_float64": (dict(q=torch.rand(B, T, H, D, dtype=torch.float64),
                       k=torch.rand(B, T, Hkv, D, dtype=torch.float64),
                       v=torch.rand(B, T, Hkv, D, dtype=torch.float64)),
                  ["q has dtype torch.float64", "expected torch.float32, torch.bfloat16"]),
    "q_int": (dict(q=torch.ones(B, T, H, D, dtype=torch.int32)), ["q has dtype torch.int32"]),
    "k_dtype_differs": (dict(k=torch.rand(B, T, Hkv, D).half()),
                        ["k has dtype torch.float16 but q has torch.float32"]),
    "k_on_other_device": (dict(k=torch.empty(B, T, Hkv, D, device="meta")),
                          ["k is on meta but q is on cpu"]),
    "v_on_other_device": (dict(v=torch.empty(B, T, Hkv, D, device="meta")),
                          ["v is on meta but q is on cpu"]),
    "weight_on_other_device": (dict(kq_pre=torch.rand(H, 1, 3, 5, device="meta")),
                               ["kq_pre is on meta but q is on cpu"]),
    "k_batch": (dict(k=torch.rand(1, T, Hkv, D)), ["k has shape [1,9,2,8]", "B=2, T=9"]),
    "v_time": (dict(v=torch.rand(B, T + 1, Hkv, D)), ["v has shape [2,10,2,8]", "B=2, T=9"]),
    "k_head_dim": (dict(k=torch.rand(B, T, Hkv, D + 1)), ["k has shape", "D=8"]),
    "v_heads_differ_from_k": (dict(v=torch.rand(B, T, 1, D)), ["v has shape [2,9,1,8]",
                                                               "Hkv=2"]),
    "h_not_multiple_of_hkv": (dict(k=torch.rand(B, T, 3, D), v=torch.rand(B, T, 3, D)),
                              ["H=4", "Hkv=3", "multiple"]),
    "q_last_dim_strided": (dict(q=torch.rand(B, T, H, 2 * D)[..., ::2]),
                           ["q has strides", "last dimension (D) must be contiguous"]),
    "k_last_dim_strided": (dict(k=torch.rand(B, T, D, Hkv).transpose(2, 3)),
                           ["k has strides", "contiguous"]),
    # (an empty batch or sequence is an empty output: test_backward)
    "no_heads": (dict(q=torch.rand(B, T, 0, D)), ["q has shape [2,9,0,8]", "at least 1"]),
    "too_many_heads": (dict(q=torch.rand(1, 1, 257, 1), k=torch.rand(1, 1, 1, 1),
                            v=torch.rand(1, 1, 1, 1)), ["at most 256 heads"]),
    "kq_pre_wrong_heads": (dict(kq_pre=torch.rand(3, 1, 3, 5)),
                           ["kq_pre has shape [3,1,3,5]", "expected [H,1,cq,ck]", "H=4"]),
    "kq_pre_3d": (dict(kq_pre=torch.rand(H, 3, 5)), ["kq_pre has shape [4,3,5]",
                                                     "expected [H,1,cq,ck]"]),
    "kq_pre_even_width_pad_both": (dict(kq_pre=torch.rand(H, 1, 3, 4)),
                                   ["kq_pre has shape [4,1,3,4]", "odd key width"]),
    "kq_post_too_large": (dict(kq_post=torch.rand(H, 1, 65, 3)), ["kq_post has shape",
                                                                  "1..64"]),
    "head_pre_shape": (dict(head_pre=torch.rand(H, H + 1)), ["head_pre has shape [4,5]",
                                                             "expected [H,H] = [4,4]"]),
    "head_post_groups": (dict(head_post=torch.rand(1, 3, 3)),
                         ["head_post has shape [1,3,3]", "expected [H/c,c,c]"]),
    "head_post_not_square": (dict(head_post=torch.rand(2, 2, 3)),
                             ["head_post has shape [2,2,3]"]),
    "head_post_and_linear": (dict(head_post=torch.rand(2, 2, 2), head_post_linear=torch.rand(H, H)),
                             ["head_post and head_post_linear were both given"]),
    "head_post_linear_shape": (dict(head_post_linear=torch.rand(H)),
                               ["head_post_linear has shape [4]", "expected [H,H]"]),
    "gn_weight_shape": (dict(gn_weight=torch.rand(D + 1)), ["gn_weight has shape [9]",
                                                            "expected [D] = [8]"]),
    "gate_w_without_gate_b": (dict(gate_w=torch.rand(1, D)), ["gate_w and gate_b go together"]),
    "gate_b_without_gate_w": (dict(gate_b=torch.rand(1)), ["gate_w and gate_b go together"]),
    "gate_w_shape": (dict(gate_w=torch.rand(D), gate_b=torch.rand(1)),
                     ["gate_w has shape [8]", "expected [1,D] = [1,8]"]),
    "gate_b_shape": (dict(gate_w=torch.rand(1, D), gate_b=torch.rand(2)),
                     ["gate_b has shape [2]", "expected [1]"]),
    "weight_integer": (dict(gn_weight=torch.ones(D, dtype=torch.int64)),
                       ["gn_weight has dtype torch.int64", "floating-point"]),
    "weight_not_a_tensor": (dict(head_pre=[[1.0]]), ["head_pre must be a torch.Tensor or None"]),
    "layer_id_without_gn": (dict(layer_id=2), ["layer_id was given without gn_weight"]),
    "layer_id_negative": (dict(layer_id=-1, gn_weight=torch.rand(D)), ["layer_id is -1"]),
    "layer_id_float": (dict(layer_id=2.0, gn_weight=torch.rand(D)), ["layer_id must be an int"]),
    "pad_key_unknown": (dict(pad_key="middle"), ["pad_key is 'middle'", "'both', 'left'"]),
    "scale_zero": (dict(scale=0.0), ["scale is 0.0", "finite positive"]),
    "scale_negative": (dict(scale=-1.0), ["scale is -1.0"]),
    "scale_nan": (dict(scale=float("nan")), ["scale is nan"]),
    "scale_out_of_range": (dict(scale=1e6), ["scale", "out of the supported range"]),
    "scale_not_a_number": (dict(scale="0.1"), ["scale must be a number"]),
}


def _make(name, over, words):
    def fn():
        expect(call(**over), ValueError, *words)
    fn.__name__ = "test_" + name
    fn.__module__ = __name__
    return test(fn)


for _n, (_over, _words) in CASES.items():
    _make(_n, _over, _words)


@test
def test_database_not_a_database():
    path = os.path.join(os.environ["MT_TMP"], "bad.db")
    with open(path, "w") as f:
        f.write("this is not an sqlite database, not even close " * 100)
    expect(call(db=path), mt.MTAError, "bad.db")


@test
def test_module_configuration():
    expect(lambda: mt.MTAttention(4, 8, query_kernel_size=3), ValueError,
           "mta_kernel", "both the query and the key kernel size")
    expect(lambda: mt.MTAttention(4, 8, head_kernel_size=3), ValueError,
           "head_kernel_size=3 must divide n_heads=4")
    expect(lambda: mt.MTAttention(4, 8, head_kernel_size=2, post_sm_linear_head=True),
           ValueError, "exclude each other")
    expect(lambda: mt.MTAttention(4, 8, group_norm=True, layer_norm_rescale=True), ValueError,
           "layer_norm_rescale needs", "layer_id")
    expect(lambda: mt.MTAttention(4, 8, 3), ValueError, "multiple of n_kv_heads")
    expect(lambda: mt.MTAttention(4, 8, pad_key="up"), ValueError, "pad_key is 'up'")
