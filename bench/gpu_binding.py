#!/usr/bin/env python3
"""gpu_binding.py: the Python binding on CUDA tensors (issue 15, part 5), a
step of the prepared GPU run (bench/gpu_run.sh).

    python3 bench/gpu_binding.py --lib PACK/lib/libmtatune.so [--rehearse]

On a GPU, mtatune.torch.mta_attention on CUDA tensors against the
pure-PyTorch float64 version of MTA.md (python/tests/mta_reference.py),
each output compared with the library's bounds (relative L2 AND every
element, _lib.tolerance) for f32 and bf16 problems with every option on:
  forward    on the current (default) stream;
  stream     on a non-default torch.cuda.Stream, synchronised by that stream;
  graph      captured in a torch.cuda.CUDAGraph, then replayed on new values
             copied into the captured inputs (the call allocated and
             synchronised nothing during capture, else capture fails);
  counts     the library's mta_context_stats over the graph's replays: no
             allocation, sync or kernel load.
With --rehearse (no GPU: `make gpu-rehearse`) the same forward checks on CPU
tensors, the stream and graph checks reported as not run. One line per
check, then a JSON line {"checks": N, "failed": N, "cuda": bool}; exit 1 if
any check failed.
"""
import argparse
import json
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.normpath(os.path.join(HERE, ".."))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--lib", required=True, help="the libmtatune.so to load")
    ap.add_argument("--rehearse", action="store_true", help="CPU tensors only (no GPU)")
    a = ap.parse_args()
    import sqlite3  # noqa: F401  loads libsqlite3.so.0, which libmtatune.so needs
    os.environ["MTATUNE_LIB"] = os.path.abspath(a.lib)
    sys.path[:0] = [os.path.join(REPO, "python"), os.path.join(REPO, "python", "tests")]
    import torch
    import mtatune.torch as mt
    from mtatune import _lib
    from mta_reference import mta_forward

    cuda = not a.rehearse
    if cuda and not torch.cuda.is_available():
        print("binding: torch sees no CUDA device")
        print(json.dumps({"checks": 0, "failed": 1, "cuda": False}))
        return 1
    dev = torch.device("cuda" if cuda else "cpu")
    checks = failed = 0

    def report(name, ok, detail):
        nonlocal checks, failed
        checks += 1
        failed += not ok
        print(f"binding: {'ok  ' if ok else 'FAIL'} {name}: {detail}", flush=True)

    def compare(o, e, dtype):
        """(ok, text) under the library's bounds for the problem's dtype."""
        code = {torch.float32: _lib.MTA_F32, torch.bfloat16: _lib.MTA_BF16}[dtype]
        tol, atol, rtol = _lib.tolerance(code)
        o64 = o.detach().to("cpu", torch.float64)
        e = e.to("cpu", torch.float64)
        if not torch.isfinite(o64).all():
            return False, "non-finite output"
        rel = float((o64 - e).norm() / e.norm())
        rms = float(e.pow(2).mean().sqrt())
        bad = int(((o64 - e).abs() > atol * rms + rtol * e.abs()).sum())
        return rel < tol and bad == 0, f"rel L2 {rel:.3g} (bound {tol}), {bad} elements out"

    g = torch.Generator().manual_seed(int(os.environ.get("MT_SEED", "15")) % (2 ** 31))

    def rand(*shape, amp=1.0):
        return (torch.rand(*shape, generator=g, dtype=torch.float64) * 2 - 1) * amp

    B, T, H, Hkv, D = (2, 300, 8, 4, 64) if cuda else (1, 40, 4, 2, 16)
    for dtype in (torch.float32, torch.bfloat16):
        name = "f32" if dtype == torch.float32 else "bf16"
        w64 = {"kq_pre": rand(H, 1, 3, 5, amp=0.5), "head_pre": rand(H, H, amp=0.5),
               "kq_post": rand(H, 1, 2, 3, amp=0.5), "head_post": rand(H // 2, 2, 2),
               "gn_weight": rand(D) + 1.5, "gate_w": rand(1, D), "gate_b": rand(1)}
        w = {k: t.to(dev, torch.float32) for k, t in w64.items()}
        q, k, v = (rand(B, T, h, D).to(dev, dtype) for h in (H, Hkv, Hkv))

        def ref(q, k, v):
            return mta_forward(q.cpu(), k.cpu(), v.cpu(), **{n: t.cpu() for n, t in w.items()},
                               layer_id=3)

        kw = dict(w, layer_id=3)
        o = mt.mta_attention(q, k, v, **kw)
        if cuda:
            torch.cuda.synchronize()
        ok, text = compare(o, ref(q, k, v), dtype)
        report(f"forward {name} on {dev.type}", ok and o.dtype == dtype and o.device == q.device,
               f"{text}; o {o.dtype} on {o.device}")
        if not cuda:
            continue

        # a non-default stream: the kernel must run on it, ordered after its inputs
        s = torch.cuda.Stream()
        s.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(s):
            q2 = q * 0.5  # produced on s: the kernel must see it
            o2 = mt.mta_attention(q2, k, v, **kw)
        s.synchronize()
        ok, text = compare(o2, ref(q2, k, v), dtype)
        report(f"stream {name}", ok, text)

        # a CUDA graph: capture once, replay on new inputs
        sq, sk, sv = q.clone(), k.clone(), v.clone()
        side = torch.cuda.Stream()
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side):
            mt.mta_attention(sq, sk, sv, **kw)  # warm: kernel loaded, handle made
        torch.cuda.current_stream().wait_stream(side)
        torch.cuda.synchronize()
        graph = torch.cuda.CUDAGraph()
        try:
            with torch.cuda.graph(graph):
                og = mt.mta_attention(sq, sk, sv, **kw)
        except Exception as e:  # a sync or an allocation inside the call breaks capture
            report(f"graph {name}", False, f"capture failed: {e}")
            continue
        ctx = _lib.context("cuda", q.device.index or 0, None)
        before = _lib.stats(ctx)
        for rep in range(3):
            for t, h in ((sq, H), (sk, Hkv), (sv, Hkv)):
                t.copy_(rand(B, T, h, D).to(dev, dtype))
            graph.replay()
            torch.cuda.synchronize()
            ok, text = compare(og, ref(sq, sk, sv), dtype)
            report(f"graph {name} replay {rep}", ok, text)
        after = _lib.stats(ctx)
        grew = {n: after[n] - before[n] for n in after if after[n] != before[n]}
        report(f"counts {name}", not grew, f"library counters during replays: {grew or 'none'}")
    if not cuda:
        print("binding: not run without a GPU: stream, graph, counts")
    print(json.dumps({"checks": checks, "failed": failed, "cuda": cuda}))
    return 1 if failed or not checks else 0


if __name__ == "__main__":
    sys.exit(main())
