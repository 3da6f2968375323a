#!/bin/sh
# gpu_rehearse.sh: `make gpu-rehearse` (and a stage of `make test`): the
# prepared GPU run (bench/gpu_run.sh) here, with the CPU emulator standing in
# for the GPU, then a check of what it left under $OUT: every file the device
# run returns, a summary.json that parses with every step present and passed,
# the variants counted, the benchmark's rows written. Prints the tally line
# tests/run.sh reads: "[gpu-rehearse]: N ok, N failing".
cd "$(dirname "$0")/.." || exit 1
OUT=${OUT:-build/gpu-rehearse}
rm -rf "$OUT"
mkdir -p "$OUT"
OUT=$OUT sh bench/gpu_run.sh --rehearse
rc=$?
python3 - "$OUT" "$rc" <<'PY'
import json, os, sys
out, rc = sys.argv[1], int(sys.argv[2])
ok = fail = 0
def check(cond, what):
    global ok, fail
    if cond:
        ok += 1
    else:
        fail += 1
        print("gpu-rehearse: FAIL: " + what)
files = sorted(os.listdir(out))
want = ["bench.json", "bench.md", "check.txt", "gpu-run.log", "model.txt", "sanitizer.log",
        "summary.json", "tune.db"]
check(files == want, "files under $OUT: %s, expected %s" % (files, want))
check(len(files) <= 8, "more than the 8 files a device call returns")
check(rc == 0, "gpu_run.sh --rehearse exited %d (gpu-run.log says why)" % rc)
try:
    s = json.load(open(os.path.join(out, "summary.json")))
except Exception as e:
    s = {}
    check(False, "summary.json does not parse: %s" % e)
steps = {x["step"].split()[0]: x for x in s.get("steps", [])}
for name in ("setup", "check", "emulate", "sanitizer", "tune", "model", "binding", "bench",
             "serving"):
    check(name in steps, "no step %r in summary.json" % name)
check(s.get("ok") is True and s.get("rehearsal") is True, "summary.json: ok %r" % s.get("ok"))
check(s.get("finished") is True, "summary.json: finished %r" % s.get("finished"))
check(steps.get("sanitizer", {}).get("runs", 0) >= 6, "sanitizer step: %r" % steps.get("sanitizer"))
for x in s.get("steps", []):
    check(x.get("ok") is True, "step %r failed: %r" % (x.get("step"), x))
c = steps.get("check", {})
check(c.get("variants", 0) >= 1 and c.get("failed") == 0, "check step counted %r" % c)
check(steps.get("tune", {}).get("ms") is not None, "the tuning step named no winner time")
bind = steps.get("binding", {}).get("result", {})
check(bind.get("checks", 0) >= 2 and bind.get("failed") == 0, "binding step: %r" % bind)
sv = steps.get("serving", {})
check(sv.get("runs", 0) >= 8 and sv.get("failed") == 0 and sv.get("grad_worst") is not None,
      "serving step: %r" % sv)
m = steps.get("model", {})
check(m.get("estimate_ms") is not None, "the model step read no estimate (nvdisasm?)")
try:
    b = json.load(open(os.path.join(out, "bench.json")))
    check(b.get("ok") is True and len(b.get("rows", [])) >= 1, "bench.json: %r" % b.get("ok"))
except Exception as e:
    check(False, "bench.json does not parse: %s" % e)
print("[gpu-rehearse]: %d ok, %d failing" % (ok, fail))
sys.exit(1 if fail else 0)
PY
