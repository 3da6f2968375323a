"""mta_reference.py: MTA.md's forward in float64 PyTorch, step by step.

Written from ../shared/MTA.md alone, independent of the C library: the
key-query convolution is the formula's sum over kernel taps of shifted
copies (not conv2d), the head mixings are the formulas' sums. The tests
check it against the golden cases (computed with the paper's reference
operations) where those are present.
"""
import math

import torch

TORCH = torch.float64


def pad_offset(pad_key, ck):
    return {"both": (ck - 1) // 2, "left": ck - 1, "right": 0}[pad_key]


def kq_conv(Z, w, pad_key):
    """S[h,i,j] = sum_{a<cq, b<ck} w[h,0,a,b] * Z[h, i-(cq-1)+a, j-ok+b],
    Z taken as 0 outside [0,T). Z [B,H,T,T], w [H,1,cq,ck]."""
    B, H, T, _ = Z.shape
    cq, ck = w.shape[2], w.shape[3]
    ok = pad_offset(pad_key, ck)
    # Zp[r, c] = Z[r-(cq-1), c-ok]: rows shifted by the query halo, columns by ok.
    Zp = Z.new_zeros(B, H, T + cq - 1, T + ck - 1)
    Zp[:, :, cq - 1:, ok:ok + T] = Z
    out = Z.new_zeros(B, H, T, T)
    for a in range(cq):
        for b in range(ck):
            # row i+a of Zp is Z[i-(cq-1)+a], column j+b is Z[.., j-ok+b]
            out += w[:, 0, a, b].view(1, H, 1, 1) * Zp[:, :, a:a + T, b:b + T]
    return out


def mta_forward(q, k, v, kq_pre=None, head_pre=None, kq_post=None, head_post=None,
                head_post_linear=None, gn_weight=None, gate_w=None, gate_b=None,
                pad_key="both", layer_id=None, scale=None, taps=None):
    """o [B,T,H,D] float64 from q [B,T,H,D], k, v [B,T,Hkv,D] of any float
    dtype (taken exactly) and weights in the reference's shapes. Differentiable
    in its float64 inputs. taps (a dict, optional) receives the gate's input
    "gate_in" [B,T,H,D] and logit "gate_z" [B,T,H] when the problem has one."""
    # float64 tensors pass as they are, so torch.autograd differentiates the
    # reference (test_backward.py); others are converted, detached
    d = lambda t: None if t is None else t if t.dtype == TORCH else t.detach().to(TORCH)
    q, k, v = d(q), d(k), d(v)
    kq_pre, head_pre, kq_post, head_post = d(kq_pre), d(head_pre), d(kq_post), d(head_post)
    head_post_linear, gn_weight, gate_w, gate_b = (d(head_post_linear), d(gn_weight),
                                                   d(gate_w), d(gate_b))
    B, T, H, D = q.shape
    G = H // k.shape[2]
    s = scale if scale is not None else 1.0 / math.sqrt(D)
    kh = k.repeat_interleave(G, dim=2)  # head h reads kv head h // G
    vh = v.repeat_interleave(G, dim=2)
    # 1. logits
    S = torch.einsum("bihd,bjhd->bhij", q, kh) * s
    causal = torch.ones(T, T, dtype=torch.bool).tril()
    # 2. pre-softmax key-query convolution on Z (0 above the diagonal)
    if kq_pre is not None:
        S = kq_conv(S.masked_fill(~causal, 0.0), kq_pre, pad_key)
    # 3. pre-softmax head mixing
    if head_pre is not None:
        S = torch.einsum("hg,bgij->bhij", head_pre, S)
    # 4. mask, softmax
    P = torch.softmax(S.masked_fill(~causal, float("-inf")), dim=-1)
    # 5. post-softmax key-query convolution, then 0 above the diagonal
    if kq_post is not None:
        P = kq_conv(P, kq_post, pad_key).masked_fill(~causal, 0.0)
    # 6. post-softmax head mixing: P[g*c+o] = sum_i head_post[g,i,o] P[g*c+i]
    if head_post is not None:
        c = head_post.shape[1]
        P = torch.einsum("gio,bgitj->bgotj", head_post,
                         P.reshape(B, H // c, c, T, T)).reshape(B, H, T, T)
    elif head_post_linear is not None:
        P = torch.einsum("hg,bgij->bhij", head_post_linear, P)
    # 7. output
    o = torch.einsum("bhij,bjhd->bihd", P, vh)
    # 8. group norm, layer rescale
    if gn_weight is not None:
        o = o * torch.rsqrt(o.pow(2).mean(-1, keepdim=True) + 1e-5) * gn_weight
        if layer_id is not None:
            o = o * (1 - (0.8 - 0.6 * math.exp(-0.3 * layer_id)))
    # 9. gate
    if gate_w is not None:
        z = o @ gate_w[0] + gate_b[0]
        if taps is not None:
            taps["gate_in"], taps["gate_z"] = o, z
        o = o * torch.sigmoid(z).unsqueeze(-1)
    return o
