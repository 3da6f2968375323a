#!/usr/bin/python3
"""GPU benchmark: mtatune's tuned CUDA kernel against its peers, same shapes.

For each configuration and T it times, in one run, on the same inputs:
  mtatune   the tuned winner (`mtatune tune --backend cuda`, event timing with
            an L2 flush, as recorded in the DB), then `mtatune run --backend
            cuda` on this run's inputs, checked against the eager output;
  eager     bench/peer_torch.py's mta_forward (written from MTA.md) on CUDA;
  compile   the same under torch.compile;
  sdpa      F.scaled_dot_product_attention(is_causal=True), flash path, no
            MTA at all: the floor.
It prints and writes docs/gpu/bench-<date>.md: times (ms), ratios to mtatune,
achieved TFLOP/s against the counted FLOPs, peak memory.

Needs a CUDA GPU, PyTorch with CUDA, and an mtatune with the CUDA driver path
(`run --backend cuda`, `tune --backend cuda`: branch cuda-drv). Without a GPU
it exits at once with status 2 and says so.

usage: bench/gpu_bench.py [--seqs 1024,2048,4096,8192] [--batch 4] [--reps 10]
         [--configs paper96,paper128,pre96] [--longest] [--out FILE.md]
"""
import argparse, datetime, json, math, os, subprocess, sys, tempfile, time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
MTATUNE = os.environ.get("MTATUNE_BIN", os.path.join(ROOT, "bin", "mtatune"))

# name: (H, D, kq_pre (cq, ck) or None, head_pre, kq_post, head_post c, gn, gate)
CONFIGS = {
    "paper96": (16, 96, (6, 11), True, (6, 11), 16, True, True),
    "paper128": (16, 128, (6, 11), True, (6, 11), 16, True, True),
    "pre96": (16, 96, (6, 11), False, None, 0, False, False),
    "pre128": (16, 128, (6, 11), False, None, 0, False, False),
}


def key_of(cfg):
    H, D, pre, hpre, post, hc, gn, gate = cfg
    k = "h%dkv%dd%d" % (H, H, D)
    if pre: k += "-pre%dx%d" % pre
    if hpre: k += "-hpre"
    if post: k += "-post%dx%d" % post
    if hc: k += "-hc%d" % hc
    k += "-both"
    if gn: k += "-gn"
    if gate: k += "-gate"
    return k + "-bf16"


def flops(cfg, B, T):
    """Counted FLOPs of one forward: causal QK^T and PV (T*T/2 each), the
    convolutions (2*cq*ck per logit), head mixing (2*H per logit), softmax
    (~5 per logit), norm and gate (~4*D per output row)."""
    H, D, pre, hpre, post, hc, gn, gate = cfg
    logits = B * H * T * T / 2
    f = 2 * logits * D * 2 + 5 * logits
    if pre: f += 2 * pre[0] * pre[1] * logits
    if post: f += 2 * post[0] * post[1] * logits
    if hpre: f += 2 * H * logits
    if hc: f += 2 * hc * logits
    f += (4 * D if gn else 0) * B * T * H + (2 * D if gate else 0) * B * T * H
    return f


def weights(torch, cfg, dev):
    H, D, pre, hpre, post, hc, gn, gate = cfg
    g = torch.Generator().manual_seed(7)
    r = lambda *s: ((torch.rand(*s, generator=g) * 2 - 1) * 0.3).to(dev)
    W = {}
    if pre: W["kq_pre"] = r(H, 1, *pre)
    if hpre: W["head_pre"] = torch.eye(H).to(dev) + r(H, H) * 0.1
    if post: W["kq_post"] = r(H, 1, *post)
    if hc: W["head_post"] = r(H // hc, hc, hc)
    if gn: W["gn_weight"] = 1 + r(D)
    if gate:
        W["gate_w"] = r(1, D)
        W["gate_b"] = r(1)
    return W


def time_cuda(torch, fn, reps):
    fn()
    torch.cuda.synchronize()
    torch.cuda.reset_peak_memory_stats()
    ts = []
    for _ in range(reps):
        s, e = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        s.record()
        fn()
        e.record()
        torch.cuda.synchronize()
        ts.append(s.elapsed_time(e) / 1e3)
    return sorted(ts)[len(ts) // 2], torch.cuda.max_memory_allocated()


def mtatune(args, *cmd):
    p = subprocess.run([MTATUNE, *cmd], capture_output=True, text=True)
    if p.returncode:
        raise RuntimeError("mtatune %s: %s" % (" ".join(cmd), (p.stderr or p.stdout).strip()[-400:]))
    return p.stdout


def run_mtatune(np, torch, cfg, q, k, v, W, o_ref, B, T, a, db):
    key = key_of(cfg)
    mtatune(a, "tune", "--backend", "cuda", "--problem", key, "--seq", str(T), "--batch", str(B),
            "--db", db, "--strategy", a.strategy, "--budget", str(a.budget))
    best = mtatune(a, "best", "--backend", "cuda", "--db", db, "--problem", key)
    sec = None
    for line in best.splitlines():  # winner rows carry a time like "1.234 ms"
        toks = line.split()
        for i, t in enumerate(toks[:-1]):
            if toks[i + 1] in ("ms", "s") and t.replace(".", "", 1).isdigit():
                sec = float(t) * (1e-3 if toks[i + 1] == "ms" else 1)
    with tempfile.TemporaryDirectory() as d:
        for n, t in (("q", q), ("k", k), ("v", v)):
            np.save(os.path.join(d, n + ".npy"), t.float().cpu().numpy())
        for n, t in W.items():
            np.save(os.path.join(d, n + ".npy"), t.float().cpu().numpy())
        out = os.path.join(d, "o.npy")
        mtatune(a, "run", "--backend", "cuda", "--dtype", "bf16", "--inputs", d, "--out", out,
                "--db", db)
        o = torch.from_numpy(np.load(out)).to(o_ref.device)
    err = float((o - o_ref.float()).norm() / o_ref.float().norm())
    mem = (q.numel() + k.numel() + v.numel()) * 2 + o_ref.numel() * 4
    return sec, mem, err


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--seqs", default="1024,2048,4096,8192")
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--reps", type=int, default=10)
    ap.add_argument("--configs", default="paper96,paper128,pre96,pre128")
    ap.add_argument("--longest", action="store_true", help="also double T until each method fails")
    ap.add_argument("--strategy", default="random")
    ap.add_argument("--budget", type=int, default=24)
    ap.add_argument("--out")
    a = ap.parse_args()
    try:
        import torch
    except ImportError:
        print("gpu-bench needs a GPU machine with PyTorch (CUDA); PyTorch is not installed here",
              file=sys.stderr)
        return 2
    if not torch.cuda.is_available():
        print("gpu-bench needs a GPU: torch.cuda.is_available() is False on this machine",
              file=sys.stderr)
        return 2
    import numpy as np
    import torch.nn.functional as F
    sys.path.insert(0, HERE)
    from peer_torch import mta_forward
    dev = torch.device("cuda")
    db = os.path.join(tempfile.mkdtemp(prefix="mta-gpu-bench-"), "bench.db")
    compiled = torch.compile(mta_forward)
    rows = []
    for name in a.configs.split(","):
        cfg = CONFIGS[name]
        H, D = cfg[0], cfg[1]
        seqs = [int(x) for x in a.seqs.split(",")]
        T, i = seqs[0], 0
        while True:
            if i < len(seqs):
                T = seqs[i]
            elif a.longest:
                T *= 2
            else:
                break
            i += 1
            B = a.batch
            g = torch.Generator(device="cuda").manual_seed(T)
            mk = lambda: (torch.rand(B, T, H, D, device=dev, generator=g) * 2 - 1).to(torch.bfloat16)
            q, k, v = mk(), mk(), mk()
            W = weights(torch, cfg, dev)
            row = {"config": name, "T": T, "B": B, "flops": flops(cfg, B, T)}
            o_ref = None
            for meth, fn in (
                ("eager", lambda: mta_forward(q, k, v, W)),
                ("compile", lambda: compiled(q, k, v, W)),
                ("sdpa", lambda: F.scaled_dot_product_attention(
                    q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2), is_causal=True))):
                try:
                    with torch.no_grad():
                        if meth == "eager":
                            o_ref = fn()
                        row[meth] = time_cuda(torch, fn, a.reps)
                except Exception as e:  # out of memory is the expected failure
                    row[meth] = None
                    row[meth + "_err"] = type(e).__name__
                torch.cuda.empty_cache()
            try:
                if o_ref is None:
                    raise RuntimeError("no eager output to check against")
                sec, mem, err = run_mtatune(np, torch, cfg, q, k, v, W, o_ref, B, T, a, db)
                row["mtatune"] = (sec, mem)
                row["mtatune_rel_l2_vs_eager"] = err
            except Exception as e:
                row["mtatune"] = None
                row["mtatune_err"] = str(e)[:200]
            rows.append(row)
            print(json.dumps(row), flush=True)
            if all(row.get(m) is None for m in ("eager", "compile", "sdpa", "mtatune")):
                break
    write_report(a, rows, torch)
    return 0


def fmt(row, m):
    r = row.get(m)
    if not r or r[0] is None:
        return "n/a (%s)" % row.get(m + "_err", "failed")[:40], "", ""
    sec, mem = r
    base = row.get("mtatune")
    ratio = "%.2fx" % (sec / base[0]) if base and base[0] else ""
    return "%.3f" % (sec * 1e3), "%.1f / %s" % (row["flops"] / sec / 1e12, ratio), "%.2f" % (mem / 2**30)


def write_report(a, rows, torch):
    day = datetime.date.today().isoformat()
    out = a.out or os.path.join(ROOT, "docs", "gpu", "bench-%s.md" % day)
    commit = subprocess.run(["git", "-C", ROOT, "rev-parse", "HEAD"], capture_output=True,
                            text=True).stdout.strip()
    lines = ["# GPU benchmark, %s" % day, "",
             "- device: %s" % torch.cuda.get_device_name(0),
             "- commit: %s" % commit,
             "- command: `%s`" % " ".join([os.path.relpath(sys.argv[0], ROOT)] + sys.argv[1:]),
             "- torch %s; bf16 inputs; batch %d; times are medians of %d runs (CUDA events);"
             " mtatune's time is the tuner's recorded winner time" % (torch.__version__, a.batch, a.reps),
             "- TFLOP/s count the FLOPs of bench/gpu_bench.py:flops(); ratios are time / mtatune time;"
             " memory is torch.cuda.max_memory_allocated (mtatune: its tensors' sizes)", "",
             "| config | T | method | ms | TFLOP/s / ratio | peak GiB |", "|---|---|---|---|---|---|"]
    for r in rows:
        for m in ("mtatune", "eager", "compile", "sdpa"):
            ms, tf, mem = fmt(r, m)
            lines.append("| %s | %d | %s | %s | %s | %s |" % (r["config"], r["T"], m, ms, tf, mem))
        if "mtatune_rel_l2_vs_eager" in r:
            lines.append("| | | mtatune vs eager rel L2 | %.2e | | |" % r["mtatune_rel_l2_vs_eager"])
    os.makedirs(os.path.dirname(out), exist_ok=True)
    with open(out, "w") as f:
        f.write("\n".join(lines) + "\n")
    print("wrote", out)


if __name__ == "__main__":
    sys.exit(main())
