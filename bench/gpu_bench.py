#!/usr/bin/env python3
"""GPU benchmark: mtatune's tuned CUDA kernel against its peers, same shapes, one run.

For each configuration and T, on the same bf16 inputs:
  mtatune   the winner of `mtatune tune --backend cuda` at that T (random search),
            then re-timed with `tune --variant WINNER` in ROUNDS rounds interleaved
            with the peers' rounds (CUDA events around the launch, L2 flushed
            before each run, median); its output (`run --backend cuda --variant`)
            is checked against eager PyTorch's;
  eager     bench/peer_torch.py's mta_forward (written from MTA.md), CUDA events;
  compile   the same under torch.compile;
  sdpa      F.scaled_dot_product_attention(is_causal=True), the flash path, no MTA
            at all: the floor.
Ratios are peer time / mtatune time, from medians of the interleaved rounds.

Modes:
  default     configs paper96, paper128, pre96; T = 1024, 2048, 4096, 8192
              (--longest: then doubling T until a method fails);
  --short     the prepared GPU run (bench/gpu_run.sh): the three configs at
              T=4096, torch.compile for paper96 only, and one mtatune run at
              T=65536 (B=1) to show it runs;
  --rehearse  no GPU, no PyTorch: the same plumbing with mtatune's cuda-emu
              backend on a tiny configuration (peers skipped), for
              `make gpu-rehearse`.

Writes --json (all numbers) and --md (a table). Exit status: 0 when every
mtatune measurement and check succeeded, 1 otherwise, 2 without a GPU (or
PyTorch) outside --rehearse.
"""
import csv
import io
import argparse, datetime, json, math, os, shutil, subprocess, sys, tempfile, time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)

# name: (H, D, kq_pre (cq, ck) or None, head_pre, kq_post, head_post c, gn, gate)
CONFIGS = {
    "paper96": (16, 96, (6, 11), True, (6, 11), 16, True, True),
    "paper128": (16, 128, (6, 11), True, (6, 11), 16, True, True),
    "pre96": (16, 96, (6, 11), False, None, 0, False, False),
    "pre128": (16, 128, (6, 11), False, None, 0, False, False),
    "tiny": (4, 16, (3, 5), True, (3, 5), 4, True, True),  # --rehearse
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
    """Counted FLOPs of one forward: causal QK^T and PV (T*(T+1)/2 each), the
    convolutions (2*cq*ck per logit), head mixing (2*H per logit), softmax
    (~5 per logit), norm and gate (~6*D per output row)."""
    H, D, pre, hpre, post, hc, gn, gate = cfg
    logits = B * H * T * (T + 1) / 2
    f = 2 * logits * D * 2 + 5 * logits
    if pre: f += 2 * pre[0] * pre[1] * logits
    if post: f += 2 * post[0] * post[1] * logits
    if hpre: f += 2 * H * logits
    if hc: f += 2 * hc * logits
    f += (4 * D if gn else 0) * B * T * H + (2 * D if gate else 0) * B * T * H
    return f


class Mtatune:
    """The mtatune binary: tuning, re-timing a variant, one checked run."""

    def __init__(self, binary, db, backend, log):
        self.bin, self.db, self.backend, self.log = binary, db, backend, log

    def call(self, *args, timeout=600):
        cmd = [self.bin] + list(args)
        t0 = time.time()
        p = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
        self.log.write("$ %s\n[exit %d, %.1f s]\n%s%s\n" % (" ".join(cmd), p.returncode,
                                                          time.time() - t0, p.stdout, p.stderr))
        self.log.flush()
        if p.returncode:
            raise RuntimeError("mtatune %s: exit %d: %s" % (args[0], p.returncode,
                                                           (p.stderr or p.stdout).strip()[-300:]))
        return p.stdout

    def winner(self, key, T):
        """(ms, spec) of the forward winner recorded for key at T (its T
        bucket, else the last one listed), from `best --format csv`."""
        out = self.call("best", "--db", self.db, "--problem", key, "--format", "csv")
        rows = list(csv.DictReader(io.StringIO(out)))
        if not rows or "variant" not in rows[0]:
            raise RuntimeError("mtatune best printed no table:\n" + out)
        best = None
        for r in rows:
            if r.get("problem") != key or r.get("op", "fwd") != "fwd":
                continue
            if int(r["seq"]) == T or best is None:
                best = (float(r["ms"]), r["variant"])
        if best is None:
            raise RuntimeError("no winner for %s in:\n%s" % (key, out))
        return best

    def tune(self, key, T, B, budget, reps, variant=None, verify_seq=None):
        args = ["tune", "--backend", self.backend, "--problem", key, "--seq", str(T),
                "--batch", str(B), "--db", self.db, "--reps", str(reps), "--quiet"]
        if variant:
            args += ["--variant", variant, "--top", "1"]
        else:
            args += ["--strategy", "random", "--budget", str(budget)]
        if verify_seq:
            args += ["--verify-seq", str(verify_seq)]
        self.call(*args, timeout=1800)
        return self.winner(key, T)

    def run(self, inputs, out, variant):
        self.call("run", "--backend", self.backend, "--variant", variant, "--dtype", "bf16",
                  "--inputs", inputs, "--out", out)


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
    """Median seconds of reps runs (CUDA events), after one warm-up; peak memory."""
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


def median(xs):
    xs = sorted(x for x in xs if x is not None)
    return xs[len(xs) // 2] if xs else None


def save_inputs(np, d, tensors):
    os.makedirs(d, exist_ok=True)
    for n, t in tensors.items():
        np.save(os.path.join(d, n + ".npy"), t)


def bench_one(a, m, name, cfg, T, B, torch, compiled, peers):
    """One configuration at one T: tune, then interleaved rounds."""
    H, D = cfg[0], cfg[1]
    key = key_of(cfg)
    row = {"config": name, "key": key, "T": T, "B": B, "flops": flops(cfg, B, T)}
    work = tempfile.mkdtemp(prefix="mta-bench-")
    try:
        import numpy as np
        dev = torch.device("cuda")
        g = torch.Generator(device="cuda").manual_seed(T)
        mk = lambda: (torch.rand(B, T, H, D, device=dev, generator=g) * 2 - 1).to(torch.bfloat16)
        q, k, v = mk(), mk(), mk()
        W = weights(torch, cfg, dev)
        # tuning (once) and the winner
        try:
            ms, spec = m.tune(key, T, B, a.budget, a.reps, variant=a.variant)
            row["mtatune_variant"] = spec
            row["mtatune_tune_ms"] = ms
        except Exception as e:  # the failure is the row's result
            row["mtatune_err"] = str(e)[:300]
            spec = None
        from peer_torch import mta_forward
        import torch.nn.functional as F
        fns = {"eager": lambda: mta_forward(q, k, v, W),
               "sdpa": lambda: F.scaled_dot_product_attention(
                   q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2), is_causal=True)}
        if compiled is not None:
            fns["compile"] = lambda: compiled(q, k, v, W)
        fns = {n: f for n, f in fns.items() if n in peers}
        times = {n: [] for n in list(fns) + ["mtatune"]}
        mem = {}
        o_ref = None
        for rnd in range(a.rounds):
            for meth, fn in fns.items():
                if row.get(meth + "_err"):
                    continue
                try:
                    with torch.no_grad():
                        if meth == "eager" and o_ref is None:
                            o_ref = fn()
                        t, pk = time_cuda(torch, fn, a.reps)
                    times[meth].append(t)
                    mem[meth] = pk
                except Exception as e:  # out of memory is the expected failure
                    row[meth + "_err"] = type(e).__name__ + ": " + str(e)[:120]
                torch.cuda.empty_cache()
            if spec and not row.get("mtatune_err"):
                try:
                    ms, _ = m.tune(key, T, B, 0, a.reps, variant=spec)
                    times["mtatune"].append(ms / 1e3)
                except Exception as e:
                    row["mtatune_err"] = str(e)[:300]
        for meth, ts in times.items():
            row[meth + "_s"] = median(ts)
            row[meth + "_rounds"] = ts
            if meth in mem:
                row[meth + "_peak_bytes"] = mem[meth]
        # mtatune's output against eager's, on the same inputs
        if spec and not row.get("mtatune_err") and o_ref is not None:
            try:
                d = os.path.join(work, "in")
                save_inputs(np, d, {"q": q.float().cpu().numpy(), "k": k.float().cpu().numpy(),
                                    "v": v.float().cpu().numpy(),
                                    **{n: t.float().cpu().numpy() for n, t in W.items()}})
                out = os.path.join(work, "o.npy")
                m.run(d, out, spec)
                o = torch.from_numpy(np.load(out)).to(o_ref.device)
                ref = o_ref.float()
                row["mtatune_rel_l2_vs_eager"] = float((o - ref).norm() / ref.norm())
            except Exception as e:
                row["mtatune_check_err"] = str(e)[:300]
        base = row.get("mtatune_s")
        for meth in fns:
            t = row.get(meth + "_s")
            if t and base:
                row[meth + "_over_mtatune"] = t / base
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return row


def rehearse_one(a, m, name, cfg, T, B):
    """--rehearse: the plumbing of bench_one without a GPU: mtatune's cuda-emu
    backend runs the default variant once on a golden case (not a GPU time)."""
    row = {"config": name, "key": key_of(cfg), "T": T, "B": B, "flops": flops(cfg, B, T),
           "rehearsal": True}
    golden = a.golden
    d = os.path.join(golden, "dev-full") if golden else None
    if not d or not os.path.isdir(d):
        row["mtatune_err"] = "no golden case dev-full under %r" % golden
        return row
    spec = a.variant or "cuda:v3,bq=16,bk=32,hpb=4,warps=8"
    out = os.path.join(tempfile.mkdtemp(prefix="mta-rehearse-"), "o.npy")
    t0 = time.time()
    try:
        m.call("run", "--backend", "cuda-emu", "--variant", spec, "--dtype", "bf16",
               "--inputs", d, "--out", out, "--expected", os.path.join(d, "expected.npy"))
        row["mtatune_variant"] = spec
        row["mtatune_s"] = time.time() - t0
        row["mtatune_rounds"] = [row["mtatune_s"]]
    except Exception as e:
        row["mtatune_err"] = str(e)[:300]
    for meth in ("eager", "compile", "sdpa"):
        row[meth + "_err"] = "skipped: rehearsal (no GPU, no PyTorch)"
    shutil.rmtree(os.path.dirname(out), ignore_errors=True)
    return row


def write_md(a, rows, path, env):
    lines = ["# GPU benchmark, %s" % env["date"], "",
             "- device: %s" % env.get("device", "?"),
             "- commit: %s" % env.get("commit", "?"),
             "- command: `%s`" % env["command"],
             "- torch %s; bf16 inputs; times: medians of %d rounds of %d runs, mtatune's"
             " interleaved with the peers' (CUDA events; mtatune flushes L2 before each run)"
             % (env.get("torch", "-"), a.rounds, a.reps),
             "- ratio: peer time / mtatune time; TFLOP/s of bench/gpu_bench.py:flops()", "",
             "| config | T | B | method | ms | TFLOP/s | ratio | peak GiB |",
             "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        for meth in ("mtatune", "eager", "compile", "sdpa"):
            t = r.get(meth + "_s")
            if t is None:
                why = r.get(meth + "_err", "not run")
                lines.append("| %s | %d | %d | %s | n/a: %s | | | |" % (
                    r["config"], r["T"], r["B"], meth, why[:60]))
                continue
            ratio = r.get(meth + "_over_mtatune")
            pk = r.get(meth + "_peak_bytes")
            lines.append("| %s | %d | %d | %s | %.3f | %.1f | %s | %s |" % (
                r["config"], r["T"], r["B"], meth, t * 1e3, r["flops"] / t / 1e12,
                "%.2fx" % ratio if ratio else "", "%.2f" % (pk / 2**30) if pk else ""))
        if "mtatune_rel_l2_vs_eager" in r:
            lines.append("| | | | mtatune vs eager, rel L2 | %.2e | | | |" %
                         r["mtatune_rel_l2_vs_eager"])
    with open(path + ".tmp", "w") as f:
        f.write("\n".join(lines) + "\n")
    os.replace(path + ".tmp", path)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--configs", default="paper96,paper128,pre96")
    ap.add_argument("--seqs", default="1024,2048,4096,8192")
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--reps", type=int, default=10, help="runs per timing")
    ap.add_argument("--rounds", type=int, default=3, help="interleaved timing rounds")
    ap.add_argument("--budget", type=int, default=12, help="variants the random search tries")
    ap.add_argument("--variant", help="time this mtatune variant instead of tuning")
    ap.add_argument("--longest", action="store_true", help="double T until each method fails")
    ap.add_argument("--short", action="store_true", help="the prepared GPU run's mode")
    ap.add_argument("--rehearse", action="store_true", help="no GPU: plumbing only")
    ap.add_argument("--mtatune", default=os.environ.get("MTATUNE_BIN",
                                                         os.path.join(ROOT, "bin", "mtatune")))
    ap.add_argument("--db", help="tuning database (default: a fresh one)")
    ap.add_argument("--golden", default=os.environ.get("MTA_GOLDEN"),
                    help="golden cases (--rehearse)")
    ap.add_argument("--json", help="write every number here")
    ap.add_argument("--md", help="write the table here")
    ap.add_argument("--log", help="append mtatune's commands and output here")
    a = ap.parse_args()

    env = {"date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
           "command": " ".join(["bench/gpu_bench.py"] + sys.argv[1:])}
    cf = os.path.join(ROOT, "build", "gpu", "COMMIT")
    if os.path.exists(cf):
        env["commit"] = open(cf).read().strip()
    torch = compiled = None
    if a.rehearse:
        configs, seqs, a.rounds = ["tiny"], [64], 1
    else:
        try:
            import torch
        except ImportError:
            print("gpu_bench: needs PyTorch with CUDA (or --rehearse)", file=sys.stderr)
            return 2
        if not torch.cuda.is_available():
            print("gpu_bench: needs a GPU: torch.cuda.is_available() is False", file=sys.stderr)
            return 2
        env["device"] = torch.cuda.get_device_name(0)
        env["torch"] = torch.__version__
        sys.path.insert(0, HERE)
        configs = a.configs.split(",")
        seqs = [int(x) for x in a.seqs.split(",")]
        if a.short:
            seqs, a.reps, a.rounds, a.budget = [4096], min(a.reps, 5), min(a.rounds, 2), \
                min(a.budget, 6)
    for c in configs:
        if c not in CONFIGS:
            print("gpu_bench: unknown config %r (expected %s)" % (c, ", ".join(CONFIGS)),
                  file=sys.stderr)
            return 2
    if not os.access(a.mtatune, os.X_OK):
        print("gpu_bench: no mtatune binary at %s (set --mtatune or MTATUNE_BIN)" % a.mtatune,
              file=sys.stderr)
        return 2
    db = a.db or os.path.join(tempfile.mkdtemp(prefix="mta-gpu-bench-"), "bench.db")
    log = open(a.log, "a") if a.log else open(os.devnull, "w")
    m = Mtatune(a.mtatune, db, "cuda-emu" if a.rehearse else "cuda", log)
    rows = []

    def flush():  # after every row, so a run cut short keeps what it measured
        ok = all(not r.get("mtatune_err") and not r.get("mtatune_check_err") for r in rows)
        if a.json:
            with open(a.json + ".tmp", "w") as f:
                json.dump({"env": env, "ok": ok, "rows": rows}, f, indent=1)
            os.replace(a.json + ".tmp", a.json)
        if a.md:
            write_md(a, rows, a.md, env)
        return ok

    for name in configs:
        cfg = CONFIGS[name]
        peers = ("eager", "sdpa", "compile") if not a.short or name == "paper96" else \
            ("eager", "sdpa")
        if torch is not None and "compile" in peers:
            from peer_torch import mta_forward
            compiled = torch.compile(mta_forward)
        i, T = 0, seqs[0]
        while True:
            if i < len(seqs):
                T = seqs[i]
            elif a.longest:
                T *= 2
            else:
                break
            i += 1
            row = rehearse_one(a, m, name, cfg, T, 1) if a.rehearse else \
                bench_one(a, m, name, cfg, T, a.batch, torch, compiled, peers)
            rows.append(row)
            flush()
            print(json.dumps({k: v for k, v in row.items() if not k.endswith("_rounds")}),
                  flush=True)
            if i > len(seqs) and all(row.get(x + "_s") is None
                                     for x in ("eager", "compile", "sdpa", "mtatune")):
                break
    # T=65536 runs (short mode): one untuned run of the default variant, checked at 293
    if a.short and torch is not None:
        key = key_of(CONFIGS["paper96"])
        row = {"config": "paper96", "key": key, "T": 65536, "B": 1,
               "flops": flops(CONFIGS["paper96"], 1, 65536)}
        try:
            spec = subprocess.run([a.mtatune, "gen", "--problem", key, "--backend", "cuda"],
                                  capture_output=True, text=True).stdout
            spec = next(l.split()[-1] for l in spec.splitlines() if " variant " in l)
            ms, _ = m.tune(key, 65536, 1, 0, 1, variant=spec, verify_seq=293)
            row["mtatune_s"], row["mtatune_variant"] = ms / 1e3, spec
        except Exception as e:
            row["mtatune_err"] = str(e)[:300]
        rows.append(row)
        print(json.dumps(row), flush=True)
    log.close()
    return 0 if flush() else 1


if __name__ == "__main__":
    sys.exit(main())
