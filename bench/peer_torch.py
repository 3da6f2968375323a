#!/usr/bin/env python3
"""PyTorch peers of the MTA forward, written from MTA.md.

mta_forward materialises the T x T logits like the paper's reference code,
so it is the fair "what people run today" baseline, eager or under
torch.compile; plain causal scaled_dot_product_attention (no MTA) is the
floor. Used by bench/cpu_bench.c (CPU) and bench/gpu_bench.py (CUDA).

usage: peer_torch.py DIR [--reps N] [--threads N] [--device cpu|cuda]
         [--dtype f32|bf16|f16] [--layer-id N] [--pad-key both|left|right]
         [--out FILE.npy] [--check]
       peer_torch.py DIR --serve [--threads N] [--out FILE.npy]
DIR holds q.npy, k.npy, v.npy and the weight files named as in MTA.md.
Prints one JSON line: median/min seconds, peak memory (bytes), and with
--check the relative L2 error against DIR/expected.npy.

--serve runs one forward per line read from stdin, so that a caller can
interleave its own runs with these: "sdpa", "eager" or "compile" (the
first compile call compiles first, untimed), answered by one JSON line
{"which": ..., "s": seconds}; "quit" ends. With --out, the eager output is
saved after its first run. "train" runs the eager forward and its autograd
backward from DIR/dout.npy (dL/do), timing both together; its answer adds
"rss": the process's peak resident bytes so far, and the first one saves
dL/dq as DIR/eager_dq.npy.
"""
import argparse, json, math, os, resource, sys, time

import numpy as np
import torch
import torch.nn.functional as F


def load(d, name):
    p = os.path.join(d, name + ".npy")
    return torch.from_numpy(np.load(p).astype(np.float32)) if os.path.exists(p) else None


def kq_conv(S, w, pad_key):
    """PyTorch conv2d over (query, key) per head; query side causal."""
    cq, ck = w.shape[2], w.shape[3]
    ok = {"both": (ck - 1) // 2, "left": ck - 1, "right": 0}[pad_key]
    S = F.pad(S, (ok, ck - 1 - ok, cq - 1, 0))
    return F.conv2d(S, w.to(S.dtype), groups=S.shape[1])


def mta_forward(q, k, v, W, pad_key="both", layer_id=None, scale=None):
    B, T, H, D = q.shape
    G = H // k.shape[2]
    q = q.transpose(1, 2)
    k = k.transpose(1, 2).repeat_interleave(G, 1)
    v = v.transpose(1, 2).repeat_interleave(G, 1)
    s = scale if scale else 1.0 / math.sqrt(D)
    S = (q @ k.transpose(-1, -2)) * s
    causal = torch.ones(T, T, dtype=torch.bool, device=q.device).tril()
    if W.get("kq_pre") is not None:
        S = kq_conv(S.masked_fill(~causal, 0.0), W["kq_pre"], pad_key)
    if W.get("head_pre") is not None:
        S = torch.einsum("hg,bgij->bhij", W["head_pre"].to(S.dtype), S)
    P = torch.softmax(S.masked_fill(~causal, float("-inf")).float(), dim=-1).to(q.dtype)
    if W.get("kq_post") is not None:
        P = kq_conv(P, W["kq_post"], pad_key).masked_fill(~causal, 0.0)
    if W.get("head_post") is not None:
        hp = W["head_post"].to(P.dtype)
        c = hp.shape[1]
        P = torch.einsum("gio,bgitj->bgotj", hp, P.view(B, H // c, c, T, T)).reshape(B, H, T, T)
    elif W.get("head_post_linear") is not None:
        P = torch.einsum("hg,bgij->bhij", W["head_post_linear"].to(P.dtype), P)
    o = (P @ v).float()
    if W.get("gn_weight") is not None:
        o = o * torch.rsqrt(o.pow(2).mean(-1, keepdim=True) + 1e-5) * W["gn_weight"]
        if layer_id is not None:
            o = o * (1 - (0.8 - 0.6 * math.exp(-0.3 * layer_id)))
    if W.get("gate_w") is not None:
        o = o * torch.sigmoid(o @ W["gate_w"][0] + W["gate_b"][0]).unsqueeze(-1)
    return o.transpose(1, 2).contiguous()


def serve(a, q, k, v, W):
    """One timed forward per command on stdin (see the module's doc)."""
    B, T, H, D = q.shape
    G = H // k.shape[2]
    qt = q.transpose(1, 2).contiguous()
    kt = k.transpose(1, 2).repeat_interleave(G, 1).contiguous()
    vt = v.transpose(1, 2).repeat_interleave(G, 1).contiguous()
    compiled, saved, saved_dq = None, False, False
    print(json.dumps({"ready": True, "torch": torch.__version__,
                      "threads": torch.get_num_threads()}), flush=True)
    for line in sys.stdin:
        which = line.strip()
        if which == "quit":
            break
        if which == "train":
            dout = load(a.dir, "dout").to(q.device)
            t0 = time.perf_counter()
            qq, kk, vv = (x.detach().requires_grad_(True) for x in (q, k, v))
            Wg = {n: (t.detach().requires_grad_(True) if t is not None else None)
                  for n, t in W.items()}
            o = mta_forward(qq, kk, vv, Wg, a.pad_key, a.layer_id)
            o.backward(dout)
            dt = time.perf_counter() - t0
            if not saved_dq:
                np.save(os.path.join(a.dir, "eager_dq.npy"), qq.grad.float().numpy())
                saved_dq = True
            del o, qq, kk, vv, Wg
            rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
            print(json.dumps({"which": which, "s": dt, "rss": rss}), flush=True)
            continue
        with torch.no_grad():
            if which == "sdpa":
                f = lambda: F.scaled_dot_product_attention(qt, kt, vt, is_causal=True)
            elif which == "eager":
                f = lambda: mta_forward(q, k, v, W, a.pad_key, a.layer_id)
            elif which == "compile":
                if compiled is None:
                    compiled = torch.compile(mta_forward)
                    compiled(q, k, v, W, a.pad_key, a.layer_id)  # compiles, untimed
                f = lambda: compiled(q, k, v, W, a.pad_key, a.layer_id)
            else:
                print(json.dumps({"error": "unknown command %r" % which}), flush=True)
                continue
            t0 = time.perf_counter()
            o = f()
            dt = time.perf_counter() - t0
        if which == "eager" and a.out and not saved:
            np.save(a.out, o.cpu().float().numpy())
            saved = True
        del o
        print(json.dumps({"which": which, "s": dt}), flush=True)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("dir")
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--threads", type=int, default=0)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--dtype", default="f32", choices=["f32", "bf16", "f16"])
    ap.add_argument("--layer-id", type=int, default=None)
    ap.add_argument("--pad-key", default="both")
    ap.add_argument("--out")
    ap.add_argument("--check", action="store_true")
    ap.add_argument("--serve", action="store_true")
    a = ap.parse_args()
    if a.threads:
        torch.set_num_threads(a.threads)
    dt = {"f32": torch.float32, "bf16": torch.bfloat16, "f16": torch.float16}[a.dtype]
    dev = torch.device(a.device)
    names = ["kq_pre", "head_pre", "kq_post", "head_post", "head_post_linear",
             "gn_weight", "gate_w", "gate_b"]
    W = {n: load(a.dir, n) for n in names}
    W = {n: (t.to(dev) if t is not None else None) for n, t in W.items()}
    q, k, v = (load(a.dir, n).to(dev).to(dt) for n in ("q", "k", "v"))
    if a.serve:
        return serve(a, q, k, v, W)
    times = []
    with torch.no_grad():
        for _ in range(a.reps):
            if dev.type == "cuda":
                torch.cuda.synchronize()
            t0 = time.perf_counter()
            o = mta_forward(q, k, v, W, a.pad_key, a.layer_id)
            if dev.type == "cuda":
                torch.cuda.synchronize()
            times.append(time.perf_counter() - t0)
    res = {"median_s": sorted(times)[len(times) // 2], "min_s": min(times),
           "peak_rss_bytes": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024}
    if a.check:
        e = np.load(os.path.join(a.dir, "expected.npy"))
        oo = o.cpu().double().numpy()
        res["rel_l2"] = float(np.linalg.norm(oo - e) / np.linalg.norm(e))
    if a.out:
        np.save(a.out, o.cpu().float().numpy())
    print(json.dumps(res))


if __name__ == "__main__":
    sys.exit(main())
