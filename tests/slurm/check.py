#!/usr/bin/env python3
"""check.py MTATUNE WORKDIR TASKS PROBLEM SEQS BATCHES: check what the Slurm
jobs of docs/slurm.md left in WORKDIR/sweep: the shard databases, the merged
database's winners and the report.

The grid was PROBLEM x SEQS x BATCHES (space-separated lists; the sequence
lengths are powers of two, so each is its own T bucket). Prints one line per
check, "  ok    slurm NAME" or "  FAIL  slurm NAME: why"; run.sh counts them.

The checks:
  shard-dbs      every task's database sweep/db/shard-K.db exists
  shards-cover   the shards' winners are disjoint and together name every item
  one-winner     the merged database has exactly one winner per (problem, T
                 bucket, B bucket) of the grid, on one device
  merge-keeps    each merged winner is the shard's (variant, time, speed-up,
                 interval, rounds): merging does not change winners
  report-csv     results.csv has the header and one row per result the shards
                 recorded, the same rows (device ids aside)
  report-html    report.html is a whole page with a chart, naming the problem
                 and every shard's winning variant
"""
import csv
import html
import io
import os
import subprocess
import sys

BEST_HEAD = ["device", "op", "problem", "seq", "batch", "variant", "ms", "speedup",
             "ci_low", "ci_high", "rounds"]
results = []


def check(name, ok, why=""):
    results.append(ok)
    print("  ok    slurm %s" % name if ok else "  FAIL  slurm %s: %s" % (name, why))


def run_csv(mtatune, *args):
    """Rows (dicts) of an mtatune command's CSV output; raises on failure."""
    p = subprocess.run([mtatune] + list(args), capture_output=True, text=True)
    if p.returncode != 0:
        raise RuntimeError("mtatune %s: exit %d: %s" % (" ".join(args), p.returncode,
                                                         p.stderr.strip()))
    rows = list(csv.reader(io.StringIO(p.stdout)))
    if not rows:
        raise RuntimeError("mtatune %s printed nothing" % " ".join(args))
    head = rows[0]
    for r in rows[1:]:
        if len(r) != len(head):
            raise RuntimeError("mtatune %s: a row of %d fields under a header of %d: %s"
                               % (" ".join(args), len(r), len(head), ",".join(r)))
    return head, [dict(zip(head, r)) for r in rows[1:]]


def winners(mtatune, db):
    head, rows = run_csv(mtatune, "best", "--db", db, "--format", "csv")
    if head[:len(BEST_HEAD)] != BEST_HEAD:
        raise RuntimeError("best --format csv: header %s, expected it to start with %s"
                           % (",".join(head), ",".join(BEST_HEAD)))
    return rows


def key(w):
    return (w["op"], w["problem"], int(w["seq"]), int(w["batch"]))


def evidence(w):
    """A winner without its device id, which is a row number of its database."""
    return {k: v for k, v in w.items() if k != "device"}


def result_rows(mtatune, db):
    head, rows = run_csv(mtatune, "report", "--db", db, "--format", "csv")
    # ids and run ids are numbers of one database; the rest is the measurement
    return head, sorted(tuple(sorted((k, v) for k, v in r.items()
                                     if k not in ("device_id", "run_id"))) for r in rows)


def main():
    mtatune, work, tasks = sys.argv[1], sys.argv[2], int(sys.argv[3])
    problem = sys.argv[4]
    seqs = [int(x) for x in sys.argv[5].split()]
    batches = [int(x) for x in sys.argv[6].split()]
    sweep = os.path.join(work, "sweep")
    want = {("fwd", problem, t, b) for t in seqs for b in batches}

    shards = [os.path.join(sweep, "db", "shard-%d.db" % k) for k in range(1, tasks + 1)]
    missing = [s for s in shards if not os.path.isfile(s)]
    check("shard-dbs", not missing, "missing: %s" % " ".join(missing))
    merged = os.path.join(sweep, "all.db")
    got, by_shard = [], []
    try:
        by_shard = [winners(mtatune, s) for s in shards if s not in missing]
        seen = [key(w) for ws in by_shard for w in ws]
        check("shards-cover", not missing and sorted(seen) == sorted(want),
              "the shards' winners are %s, expected each of %s once"
              % (sorted(seen), sorted(want)))
        got = winners(mtatune, merged) if os.path.isfile(merged) else []
        keys = [key(w) for w in got]
        devices = {w["device"] for w in got}
        check("one-winner", sorted(keys) == sorted(want) and len(devices) == 1,
              "%s has winners %s on devices %s; expected one each of %s on one device"
              % (merged, sorted(keys), sorted(devices), sorted(want)))
        from_shards = {key(w): evidence(w) for ws in by_shard for w in ws}
        changed = ["%s: merged %s, shard %s" % (k, evidence(w), from_shards.get(k))
                   for w in got for k in [key(w)] if from_shards.get(k) != evidence(w)]
        check("merge-keeps", got and not changed, "; ".join(changed) or "no merged winners")
    except RuntimeError as e:
        check("winners", False, str(e))

    results_csv = os.path.join(sweep, "results.csv")
    try:
        if not os.path.isfile(results_csv):
            raise RuntimeError("%s is missing" % results_csv)
        with open(results_csv, newline="", encoding="utf-8") as f:
            rows = list(csv.reader(f))
        head, shard_rows = [], []
        for s in shards:
            if s not in missing:
                head, r = result_rows(mtatune, s)
                shard_rows += r
        head_ok = bool(rows) and rows[0] == head and "spec" in head and "median_ms" in head
        report_rows = sorted(tuple(sorted((k, v) for k, v in zip(rows[0], r)
                                          if k not in ("device_id", "run_id")))
                             for r in rows[1:]) if rows else []
        check("report-csv", head_ok and shard_rows and report_rows == sorted(shard_rows),
              "%s: header %s, %d rows; the shards recorded %d rows%s"
              % (results_csv, rows[0] if rows else None, len(rows) - 1, len(shard_rows),
                 "" if report_rows == sorted(shard_rows) else ", not the same"))
    except RuntimeError as e:
        check("report-csv", False, str(e))

    page = os.path.join(sweep, "report.html")
    text = ""
    if os.path.isfile(page):
        with open(page, encoding="utf-8") as f:
            text = f.read()
    named = [w for ws in by_shard for w in ws] or got
    lost = [w["variant"] for w in named
            if html.escape(w["variant"]) not in text and w["variant"] not in text]
    whole = text.lstrip().lower().startswith("<!doctype html") and "</html>" in text \
        and "<svg" in text and problem in text
    check("report-html", whole and not lost,
          "%s: %d bytes, %s; winners not named: %s"
          % (page, len(text), "a whole page with a chart naming the problem" if whole
             else "not a whole page with a chart naming the problem", lost or "none"))
    return 0 if all(results) else 1


try:
    sys.exit(main())
except Exception as e:  # a crash of the checker is a failed check, not a silent one
    check("checker", False, "check.py stopped: %r" % e)
    sys.exit(1)
