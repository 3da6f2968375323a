#!/bin/sh
# gpu_run.sh: the one prepared GPU command (docs/gpu/README.md says how to
# pack, carry and call it). In one run of at most about 8 minutes:
#
#   1. every variant of three problems' CUDA spaces checked against the
#      float64 reference on the GPU at a ragged length (T=300, B=2): an
#      exhaustive `tune --backend cuda`; pruned and compile_failed variants
#      count as failures, like verify_failed, crashed, timeout and error;
#      then v3's clusters of the paper problem (cs=2, which it does not try, and 4);
#   2. one tuning run of the paper configuration (T=4096, B=4);
#   3. then compute-sanitizer memcheck, racecheck and synccheck over
#      `run --backend cuda --variant SPEC --db tune.db` (the cubins the
#      tuning stored, nothing compiled again): one variant of each family
#      (v1, v2 algo 0 and 1, v3) on a bf16 golden case, and on the paper
#      problem's shape (H=16, D=96, 6x11 kernels, T=40) its tuned winner,
#      its 16-head default and the cluster of four;
#   and the cost model's estimate of the winner beside the measured time
#      (and of the pre96 config's tall default and a bq=16 variant);
#   3b. the Python binding (mtatune.torch) on CUDA tensors against a
#      pure-PyTorch MTA.md: default stream, another stream, a CUDA graph
#      capture replayed (bench/gpu_binding.py);
#   4. the benchmark (bench/gpu_bench.py --short): mtatune against eager
#      PyTorch, torch.compile and SDPA at T=4096, and T=65536 once.
#
# Everything lands under $OUT (at most 8 files: summary.json, gpu-run.log,
# sanitizer.log, check.txt, bench.json, bench.md, tune.db, model.txt):
# summary.json is the machine-readable result, written again as each step
# ends (a run cut short keeps the steps it finished, "finished": false).
# Exit status 0 when every check passed, 1 otherwise. Every command runs
# under a time limit cut to what is left of one budget, GPU_RUN_SECONDS
# (440): once it is spent, each command left gets a second, so the run ends
# within about 8 minutes, and the benchmark keeps the rows it finished (it
# writes as it goes).
#
# Nothing is built or installed here: the binary and the golden cases come
# from the packed folder `make gpu-pack` writes (build/gpu: bin/mtatune with
# SQLite linked in, lib/libmtatune.so for the Python binding, golden/,
# COMMIT), carried with the call. The CUDA driver
# is found wherever it lives ($MTATUNE_LIBCUDA, the usual folders, ldconfig),
# NVRTC in /usr/local/cuda or Python's nvidia-cuda-nvrtc.
#
# --rehearse (`make gpu-rehearse`, part of `make test`): the same script on a
# machine without a GPU, each device step done by the CPU emulator on small
# problems (cuda-emu; tuning on the cpu backend for the database steps),
# compute-sanitizer and PyTorch's peers skipped: it proves the plumbing
# (the pack, the parsing, the files under $OUT) before device time is spent.
set -u
cd "$(dirname "$0")/.." || exit 1

REHEARSE=0
[ "${1:-}" = "--rehearse" ] && REHEARSE=1
PACK=${MTA_GPU_PACK:-build/gpu}
MTATUNE=${MTATUNE:-$PACK/bin/mtatune}
GOLDEN=${MTA_GOLDEN:-$PACK/golden}
OUT=${OUT:-build/gpu-out}
mkdir -p "$OUT" || exit 1
OUT=$(cd "$OUT" && pwd)
LOG=$OUT/gpu-run.log
SAN=$OUT/sanitizer.log
CHECK=$OUT/check.txt
MODEL=$OUT/model.txt
WORK=$(mktemp -d "${TMPDIR:-/tmp}/mta-gpu-run-XXXXXX") || exit 1
DB=$WORK/tune.db   # copied whole into $OUT at the end (no -wal/-shm files there)
trap 'rm -rf "$WORK"' EXIT
HOME=$WORK/home
MTATUNE_CACHE=$WORK/cache
MTATUNE_DB=$WORK/default.db
export HOME MTATUNE_CACHE MTATUNE_DB
mkdir -p "$HOME"
: >"$LOG"
: >"$SAN"
: >"$CHECK"
: >"$MODEL"
rm -f "$OUT/tune.db"
START=$(date +%s)
BUDGET=${GPU_RUN_SECONDS:-440}  # the whole run; each command's timeout is capped by what is left
FAILED=0
STEPS=""   # JSON objects of the steps, comma-separated

say() { echo "$*" | tee -a "$LOG"; }
elapsed() { echo $(($(date +%s) - START)); }
# cap SECONDS: SECONDS, or what is left of the budget if less (at least 1)
cap() { l=$((BUDGET - $(elapsed))); [ $l -lt "$1" ] && echo $((l > 1 ? l : 1)) || echo "$1"; }
json_str() { printf '%s' "$1" | sed 's/\\/\\\\/g; s/"/\\"/g' | tr '\n\t' '  '; }
# summary FINISHED(true/false): summary.json from the steps so far, replaced whole
summary() {
	printf '{"ok": %s, "finished": %s, "rehearsal": %s, "commit": "%s", "device": "%s", "date": "%s",\n "seconds": %d, "steps": [%s\n]}\n' \
		"$([ $FAILED -eq 0 ] && echo true || echo false)" "$1" \
		"$([ $REHEARSE -eq 1 ] && echo true || echo false)" "$(json_str "${COMMIT:-unknown}")" \
		"$(json_str "${DEVICE:-}")" "$(date -u '+%Y-%m-%dT%H:%M:%SZ')" "$(elapsed)" "$STEPS" \
		>"$OUT/summary.json.tmp" && mv "$OUT/summary.json.tmp" "$OUT/summary.json"
}
# step NAME OK(0/1) JSON-FIELDS: one entry of summary.json, written at once
step() {
	[ "$2" -eq 0 ] || FAILED=1
	STEPS="$STEPS${STEPS:+,}
  {\"step\": \"$1\", \"ok\": $([ "$2" -eq 0 ] && echo true || echo false), \"seconds\": $(elapsed)${3:+, $3}}"
	summary false
}
# mkin DIR H D T CQ CK C: inputs of the paper's family into DIR: q, k, v
# [1,T,H,D] and every weight (CQxCK kernels both sides, head mixing both
# sides, groups of C heads after the softmax, group norm, gate), uniform in [-1, 1)
mkin() {
	mkdir -p "$1" && python3 - "$@" <<'PY'
import os, random, struct, sys
out, H, D, T, cq, ck, c = sys.argv[1], *map(int, sys.argv[2:8])
def npy(name, shape):
    n = 1
    for s in shape:
        n *= s
    head = "{'descr': '<f4', 'fortran_order': False, 'shape': (%s), }" % (
        ", ".join("%d" % s for s in shape) + ("," if len(shape) == 1 else ""))
    head += " " * ((64 - (10 + len(head) + 1) % 64) % 64) + "\n"
    with open(os.path.join(out, name + ".npy"), "wb") as f:
        f.write(b"\x93NUMPY\x01\x00" + struct.pack("<H", len(head)) + head.encode())
        f.write(struct.pack("<%df" % n, *[random.uniform(-1, 1) for _ in range(n)]))
for x in "qkv":
    npy(x, (1, T, H, D))
npy("kq_pre", (H, 1, cq, ck)); npy("head_pre", (H, H)); npy("kq_post", (H, 1, cq, ck))
npy("head_post", (H // c, c, c)); npy("gn_weight", (D,)); npy("gate_w", (1, D)); npy("gate_b", (1,))
PY
}
# run TIMEOUT CMD...: log the command and its output; the exit status
run() {
	t=$1
	shift
	echo "\$ $*" >>"$LOG"
	timeout "$t" "$@" >>"$LOG" 2>&1
	rc=$?
	echo "[exit $rc]" >>"$LOG"
	return $rc
}

# ---- 0. the machine ----------------------------------------------------------
say "mtatune gpu run$( [ $REHEARSE -eq 1 ] && echo ' (rehearsal: the emulator stands in for the GPU)')"
say "date:   $(date -u '+%Y-%m-%d %H:%M:%S UTC')"
say "host:   $(uname -n) $(uname -m)"
COMMIT=$(cat "$PACK/COMMIT" 2>/dev/null || echo unknown)
say "commit: $COMMIT"
if [ ! -x "$MTATUNE" ]; then
	say "FAIL: no mtatune binary at $MTATUNE: run 'make gpu-pack' here and carry $PACK"
	step pack 1 "\"error\": \"no binary\""
	summary true
	exit 1
fi
if [ ! -d "$GOLDEN/dev-full" ]; then
	say "FAIL: no golden cases at $GOLDEN (make gpu-pack copies them)"
	FAILED=1
fi

if [ $REHEARSE -eq 0 ]; then
	# the driver, wherever this machine keeps it
	if [ -z "${MTATUNE_LIBCUDA:-}" ] || [ ! -e "$MTATUNE_LIBCUDA" ]; then
		MTATUNE_LIBCUDA=
		for f in /usr/lib/x86_64-linux-gnu/libcuda.so.1 /usr/local/nvidia/lib64/libcuda.so.1 \
			 /usr/local/nvidia/lib/libcuda.so.1 /usr/lib64/libcuda.so.1 /usr/lib/libcuda.so.1 \
			 /usr/local/cuda/compat/libcuda.so.1; do
			[ -e "$f" ] && { MTATUNE_LIBCUDA=$f; break; }
		done
		[ -z "$MTATUNE_LIBCUDA" ] &&
			MTATUNE_LIBCUDA=$(ldconfig -p 2>/dev/null | awk '/libcuda\.so\.1 /{print $NF; exit}')
		[ -z "$MTATUNE_LIBCUDA" ] &&
			MTATUNE_LIBCUDA=$(find /usr /lib /opt -name libcuda.so.1 2>/dev/null | head -n 1)
	fi
	export MTATUNE_LIBCUDA
	# NVRTC: the toolkit's, else the Python wheel's
	if [ -z "${MTATUNE_NVRTC:-}" ] && ! ls /usr/local/cuda/lib64/libnvrtc.so* >/dev/null 2>&1; then
		MTATUNE_NVRTC=$(find /usr /opt -name 'libnvrtc.so.1[0-9]*' 2>/dev/null | grep -v builtins |
				head -n 1)
		[ -n "$MTATUNE_NVRTC" ] && export MTATUNE_NVRTC
	fi
	say "driver: ${MTATUNE_LIBCUDA:-not found}"
	say "nvrtc:  ${MTATUNE_NVRTC:-/usr/local/cuda/lib64/libnvrtc.so}"
	command -v nvidia-smi >/dev/null 2>&1 &&
		say "$(nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm --format=csv,noheader 2>&1)"
	DEVS=$(timeout 60 "$MTATUNE" devices 2>&1)
	say "$DEVS"
	if ! echo "$DEVS" | grep -q '^cuda 0:'; then
		say "FAIL: mtatune sees no CUDA device (driver: ${MTATUNE_LIBCUDA:-none found})"
		step device 1 "\"error\": \"$(json_str "$DEVS")\""
		summary true
		exit 1
	fi
	DEVICE=$(echo "$DEVS" | sed -n 's/^cuda 0: //p' | head -n 1)
	BACKEND=cuda
else
	DEVICE="emulator"
	BACKEND=cuda-emu
fi
step setup 0 "\"device\": \"$(json_str "$DEVICE")\""

# ---- 1. every variant against the reference ----------------------------------
# The problems whose whole spaces tests/test_nvrtc.c compiles without spills.
if [ $REHEARSE -eq 0 ]; then
	PROBLEMS="h16kv16d96-pre6x11-hpre-post6x11-hc16-both-gn-gate-bf16
h4kv2d64-pre3x5-post3x5-hc2-left-gnr-f16
h2kv1d32-gate-f32"
else
	PROBLEMS="h2kv1d8-pre2x3-both-f32"
fi
say ""
say "== 1. every variant against the reference (T=300, B=2) =="
for P in $PROBLEMS; do
	if [ $REHEARSE -eq 0 ]; then
		run "$(cap 150)" "$MTATUNE" tune --backend cuda --problem "$P" --seq 300 --batch 2 \
			--verify-seq 300 --strategy exhaustive --reps 1 --warmup 0 --top 1 \
			--db "$DB" --quiet
	else    # the database and its parsing, on the cpu backend
		run 120 "$MTATUNE" tune --backend cpu --problem "$P" --seq 40 --batch 2 \
			--strategy random --budget 2 --reps 1 --warmup 0 --top 1 --db "$DB" --quiet
	fi
	rc=$?
	timeout "$(cap 30)" "$MTATUNE" list results --problem "$P" --db "$DB" >"$WORK/results" 2>&1
	cat "$WORK/results" >>"$CHECK"
	# columns: device op problem T B status ms rel_err spec [error]
	n=$(awk 'NF >= 9' "$WORK/results" | wc -l)
	okn=$(awk 'NF >= 9 && $6 == "ok"' "$WORK/results" | wc -l)
	bad=$(awk 'NF >= 9 && $6 != "ok"' "$WORK/results" | wc -l)
	statuses=$(awk 'NF >= 9 {print $6}' "$WORK/results" | sort | uniq -c | awk '{printf "%s\"%s\": %d", (NR>1?", ":""), $2, $1}')
	say "$P: $n variants, $okn ok, $bad failed (tune exit $rc)"
	[ "$n" -gt 0 ] && [ "$bad" -eq 0 ] && [ $rc -eq 0 ]
	step "check $P" $? "\"variants\": $n, \"failed\": $bad, \"statuses\": {$statuses}"
done
# v3's clusters (cs > 1): cs=2, which the exhaustive tuning above does not try
# (its registers sit near the cap), and cs=4: the paper's on the device, each against
# the reference; in the rehearsal (cuda-emu is not tuned) one of a small problem
# of the same family on the emulator against the reference on fresh inputs
# canonical specs (mtatune list prints them so)
CV="cuda:v3,bq=32,bk=32,hpb=8,warps=8,algo=0,cs=2 cuda:v3,bq=64,bk=32,hpb=4,warps=8,algo=0,cs=4"
n=0
bad=0
if [ $REHEARSE -eq 0 ]; then
	CP=h16kv16d96-pre6x11-hpre-post6x11-hc16-both-gn-gate-bf16
	CARGS=
	for V in $CV; do CARGS="$CARGS --variant $V"; done
	# shellcheck disable=SC2086 # CARGS: a flag or a spec a word
	run "$(cap 120)" "$MTATUNE" tune --backend cuda --problem "$CP" --seq 300 --batch 2 \
		--verify-seq 300 $CARGS --reps 1 --warmup 0 --top 1 --rounds 5 --db "$DB" --quiet
	rc=$?
	timeout "$(cap 30)" "$MTATUNE" list results --problem "$CP" --db "$DB" >"$WORK/results" 2>&1
	cat "$WORK/results" >>"$CHECK"
	for V in $CV; do
		n=$((n + 1))
		awk -v s="$V" 'NF >= 9 && $NF == s && $6 == "ok" {f = 1} END {exit !f}' \
			"$WORK/results" || bad=$((bad + 1))
	done
	[ $rc -eq 0 ] || bad=$((bad + 1))
else
	# q, k, v [1,40,16,16] and every weight of the family (3x5 kernels, c=4)
	CIN="$WORK/cluster-in"
	mkin "$CIN" 16 16 40 3 5 4
	run 60 "$MTATUNE" run --backend ref --dtype bf16 --inputs "$CIN" --out "$WORK/cref.npy"
	rc=$?
	V=${CV%% *}
	n=1
	run 300 "$MTATUNE" run --backend cuda-emu --variant "$V" --dtype bf16 --inputs "$CIN" \
		--out "$WORK/co.npy" --expected "$WORK/cref.npy"
	[ $? -eq 0 ] && [ $rc -eq 0 ] || bad=1
	CP="h16kv16d16 ($V, emulated)"
fi
say "clusters of $CP: $n variants, $bad failed"
[ "$bad" -eq 0 ]
step "check clusters" $? "\"variants\": $n, \"failed\": $bad"
if [ $REHEARSE -eq 1 ]; then
	# each CUDA family in the emulator against a golden case's expected output
	for V in cuda:v1,bq=16,bk=32,hpb=4,warps=4 cuda:v2,bq=16,bk=16,hpb=4,warps=4,algo=1 \
		 cuda:v3,bq=16,bk=32,hpb=4,warps=8; do
		run 300 "$MTATUNE" run --backend cuda-emu --variant "$V" --dtype bf16 \
			--inputs "$GOLDEN/dev-full" --out "$WORK/o.npy" \
			--expected "$GOLDEN/dev-full/expected.npy"
		step "emulate $V" $? ""
	done
fi

# ---- 2. one tuning run of the paper configuration ----------------------------
PAPER=h16kv16d96-pre6x11-hpre-post6x11-hc16-both-gn-gate-bf16
say ""
if [ $REHEARSE -eq 0 ]; then
	say "== 2. tuning the paper configuration (T=4096, B=4) =="
	run "$(cap 100)" "$MTATUNE" tune --backend cuda --problem $PAPER --seq 4096 --batch 4 \
		--strategy exhaustive --reps 5 --warmup 1 --top 2 --db "$DB" --quiet
	rc=$?
	# and its clusters beside the default, timed (cs=2 is not in the space)
	run "$(cap 60)" "$MTATUNE" tune --backend cuda --problem $PAPER --seq 4096 --batch 4 \
		--variant cuda:v3,bq=32,bk=32,hpb=8,warps=8,cs=2 \
		--variant cuda:v3,bq=64,bk=32,hpb=4,warps=8,cs=4 --reps 5 --warmup 1 --top 2 \
		--db "$DB" --quiet
	[ $? -eq 0 ] || rc=1
	TP=$PAPER
else
	say "== 2. one tuning run (rehearsal: cpu backend, small problem) =="
	TP=h2kv1d8-pre2x3-both-f32
	run 120 "$MTATUNE" tune --backend cpu --problem $TP --seq 64 --strategy random --budget 2 \
		--reps 1 --warmup 0 --top 1 --db "$DB" --quiet
	rc=$?
fi
timeout "$(cap 30)" "$MTATUNE" best --db "$DB" --problem "$TP" >"$WORK/best" 2>&1
cat "$WORK/best" >>"$LOG"
# columns: device op problem T-bucket B-bucket ms rounds speed-up... variant (last)
WIN=$(awk -v T="$([ $REHEARSE -eq 0 ] && echo 4096 || echo 64)" \
	'$1 != "device" && $2 == "fwd" && $4 == T {print $6, $NF; exit}' "$WORK/best")
WIN_MS=${WIN%% *}
WIN_SPEC=${WIN#* }
say "winner: ${WIN_SPEC:-none} ${WIN_MS:-?} ms"
[ $rc -eq 0 ] && [ -n "$WIN" ]
step tune $? "\"problem\": \"$TP\", \"winner\": \"$(json_str "${WIN_SPEC:-}")\", \"ms\": ${WIN_MS:-null}"

# ---- 3. compute-sanitizer, after the tuning (its database holds the cubins) ----
say ""
say "== 3. compute-sanitizer (memcheck, racecheck, synccheck) =="
if [ $REHEARSE -eq 0 ]; then
	if ! command -v compute-sanitizer >/dev/null 2>&1; then
		for d in /usr/local/cuda/bin /usr/local/cuda/compute-sanitizer; do
			[ -x "$d/compute-sanitizer" ] && PATH=$d:$PATH
		done
	fi
	SANITIZER=$(command -v compute-sanitizer || true)
else
	SANITIZER=
fi
# dev-full: every option of MTA.md (6x11 kernels, mixing, norm, gate), H=4, D=16:
# a variant of each family
FAMILIES="cuda:v1,bq=16,bk=32,hpb=4,warps=4 cuda:v2,bq=16,bk=32,hpb=4,warps=8,algo=0
cuda:v2,bq=16,bk=16,hpb=4,warps=4,algo=1 cuda:v3,bq=16,bk=32,hpb=4,warps=8"
# the paper problem's shape at T=40 (one query tile, ragged): its tuned winner,
# its 16-head default and the cluster of four, from the cubins tune.db holds;
# in the rehearsal the emulated cluster of step 1 again, on fresh inputs (its
# build is in the kernel cache)
SIN="$WORK/paper-in"
if [ $REHEARSE -eq 0 ]; then
	mkin "$SIN" 16 96 40 6 11 16
	PSPECS="${WIN_SPEC:-} cuda:v3,bq=16,bk=32,hpb=16,warps=8,algo=0
cuda:v3,bq=64,bk=32,hpb=4,warps=8,algo=0,cs=4"
else
	FAMILIES="cuda:v1,bq=16,bk=32,hpb=4,warps=4"
	mkin "$SIN" 16 16 40 3 5 4
	PSPECS=${CV%% *}
fi
run "$(cap 60)" "$MTATUNE" run --backend ref --dtype bf16 --inputs "$SIN" --out "$WORK/sref.npy" \
	</dev/null
# one case a line: INPUTS|EXPECTED|SPEC
CASES=""
for V in $FAMILIES; do
	CASES="$CASES$GOLDEN/dev-full|$GOLDEN/dev-full/expected.npy|$V
"
done
seen=" "
for V in $PSPECS; do
	case "$seen" in *" $V "*) continue ;; esac # the winner may be the default
	seen="$seen$V "
	CASES="$CASES$SIN|$WORK/sref.npy|$V
"
done
san_total=0
san_bad=0
while IFS='|' read -r IN EXP V; do
	[ -n "$V" ] || continue
	for TOOL in memcheck racecheck synccheck; do
		san_total=$((san_total + 1))
		echo "\$ compute-sanitizer --tool $TOOL ... run --variant $V --inputs $IN" >>"$SAN"
		if [ -n "$SANITIZER" ]; then
			timeout "$(cap 60)" "$SANITIZER" --tool $TOOL --error-exitcode 9 "$MTATUNE" run \
				--backend cuda --variant "$V" --dtype bf16 --inputs "$IN" --db "$DB" \
				--out "$WORK/o.npy" --expected "$EXP" >>"$SAN" 2>&1 </dev/null
			rc=$?
		elif [ $REHEARSE -eq 1 ]; then
			echo "rehearsal: compute-sanitizer skipped" >>"$SAN"
			rc=0
			if [ $TOOL = memcheck ]; then
				timeout "$(cap 300)" "$MTATUNE" run --backend cuda-emu --variant "$V" \
					--dtype bf16 --inputs "$IN" --db "$DB" --out "$WORK/o.npy" \
					--expected "$EXP" >>"$SAN" 2>&1 </dev/null
				rc=$?
			fi
		else
			echo "FAIL: compute-sanitizer not found" >>"$SAN"
			rc=127
		fi
		echo "[exit $rc]" >>"$SAN"
		[ $rc -eq 0 ] || san_bad=$((san_bad + 1))
	done
done <<EOF
$CASES
EOF
say "sanitizer runs: $san_total, failed: $san_bad (sanitizer.log)"
[ $san_bad -eq 0 ] && [ $san_total -ge 6 ]
step sanitizer $? "\"runs\": $san_total, \"failed\": $san_bad"

# the cost model beside the measurement (nvdisasm is on the GPU machine)
say ""
say "== the cost model's estimates (for docs/gpu/model.md's comparison) =="
MODEL_MS=null
for V in "${WIN_SPEC:-}" cuda:v2,bq=16,bk=32,hpb=16,warps=8,algo=0; do
	case "$V" in cuda:*) ;; *) continue ;; esac
	[ $REHEARSE -eq 1 ] && break
	echo "\$ mtatune model --problem $PAPER --variant $V --machine h200" >>"$MODEL"
	timeout "$(cap 60)" "$MTATUNE" model --problem $PAPER --variant "$V" --machine h200 \
		>>"$MODEL" 2>&1
	echo "[exit $?]" >>"$MODEL"
done
# tall query tiles (the default where no mixing needs all 16 heads in a
# block) beside bq=16, on the bench's pre-softmax-only config (pre96)
PRE=h16kv16d96-pre6x11-bf16
for V in "" cuda:v3,bq=16,bk=64,hpb=4,warps=8,algo=0; do
	[ $REHEARSE -eq 1 ] && break
	echo "\$ mtatune model --problem $PRE ${V:+--variant $V} --machine h200" >>"$MODEL"
	timeout "$(cap 60)" "$MTATUNE" model --problem $PRE ${V:+--variant "$V"} --machine h200 \
		>>"$MODEL" 2>&1
	echo "[exit $?]" >>"$MODEL"
done
if [ $REHEARSE -eq 1 ]; then
	# the model on the rehearsal's machine too, when nvdisasm is here
	timeout 120 "$MTATUNE" model --problem h2kv1d8-pre2x3-both-bf16 --seq 256 --batch 1 \
		>>"$MODEL" 2>&1
	echo "[exit $?]" >>"$MODEL"
fi
MODEL_MS=$(awk '/^estimate/ {print $2; exit}' "$MODEL")
say "model estimate of the winner: ${MODEL_MS:-none} ms (measured: ${WIN_MS:-?} ms)"
[ -n "$MODEL_MS" ] # no estimate: the model failed (model.txt says why)
step model $? "\"estimate_ms\": ${MODEL_MS:-null}, \"measured_ms\": ${WIN_MS:-null}"

# ---- 3b. the Python binding on CUDA tensors (issue 15) --------------------------
# mtatune.torch on CUDA tensors against the pure-PyTorch MTA.md, on the
# default stream, on another stream, captured in a CUDA graph and replayed
# (bench/gpu_binding.py); the library from the pack, the package from python/.
# Rehearsed on CPU tensors with the project's venv.
say ""
say "== 3b. Python binding on CUDA tensors (bench/gpu_binding.py) =="
BPY=python3
[ $REHEARSE -eq 1 ] && [ -x .venv/bin/python ] && BPY=.venv/bin/python
timeout "$(cap 150)" env PYTHONUNBUFFERED=1 "$BPY" bench/gpu_binding.py --lib "$PACK/lib/libmtatune.so" \
	$([ $REHEARSE -eq 1 ] && echo --rehearse) >"$WORK/binding.txt" 2>&1
rc=$?
cat "$WORK/binding.txt" >>"$LOG"
BIND=$(tail -n 1 "$WORK/binding.txt" | grep '^{' || echo '{}')
say "binding exit $rc: $BIND"
step binding $rc "\"result\": $BIND"

# ---- 4. the benchmark --------------------------------------------------------
say ""
say "== 4. benchmark (bench/gpu_bench.py $([ $REHEARSE -eq 0 ] && echo --short || echo --rehearse)) =="
if [ $REHEARSE -eq 0 ]; then
	PY=python3
	timeout "$(cap 400)" env PYTHONUNBUFFERED=1 $PY bench/gpu_bench.py --short --mtatune "$MTATUNE" \
		--db "$DB" --json "$OUT/bench.json" --md "$OUT/bench.md" --log "$LOG" \
		>>"$LOG" 2>&1
	rc=$?
else
	timeout 300 python3 bench/gpu_bench.py --rehearse --mtatune "$MTATUNE" --golden "$GOLDEN" \
		--json "$OUT/bench.json" --md "$OUT/bench.md" --log "$LOG" >>"$LOG" 2>&1
	rc=$?
fi
say "benchmark exit $rc (bench.md, bench.json)"
step bench $rc "\"exit\": $rc"

# ---- 5. the backward, packed documents and decode (issues 16 and 17) ----------
# On the device backend against the float64 reference, on a golden case's
# inputs: `mtatune grad` (every gradient file within the float32 gradient
# tolerance, bench/grad_compare.py), the same on packed documents (`grad
# --cu-seqlens`), `run --cu-seqlens` (documents of length 1, 2 and longer)
# and `run --decode-from N` (N = 0, 5, T-1) checked by `run --expected`
# (on cuda the CUDA decode kernel on the GPU, runtime/cuda/decode_drv.c:
# caches in device memory, a launch per token);
# the packed forward also in bf16; the CUDA backward's space tuned
# (`tune --op bwd`: two random points and the default, each built for the
# device and checked against the reference gradients, a winner recorded in
# tune.db); and the CUDA decode space likewise (`tune --op decode`: two
# random points of warps x bk and the default, each checked row by row
# against the forward, one token at cache length T timed, a winner for T's
# bucket in tune.db). After the benchmark, so
# that it never takes the benchmark's time: each command is capped by what is
# left of the budget.
say ""
say "== 5. backward, packed documents and decode on $BACKEND against the reference =="
G="$GOLDEN/dev-full"
SRV=0; SRV_BAD=0
T5=$(python3 - "$G/q.npy" "$WORK/cu.npy" <<'PY'
import ast, struct, sys
d = open(sys.argv[1], "rb").read(4096)
n = struct.unpack("<H", d[8:10])[0]
T = ast.literal_eval(d[10:10 + n].decode("latin1"))["shape"][1]
cu = sorted({0, 1, 3, T // 3, T // 3 + 1, (2 * T) // 3, T})
h = "{'descr': '<i8', 'fortran_order': False, 'shape': (%d,), }" % len(cu)
h += " " * (63 - (10 + len(h)) % 64) + "\n"
open(sys.argv[2], "wb").write(b"\x93NUMPY\x01\x00" + struct.pack("<H", len(h)) + h.encode()
                              + struct.pack("<%dq" % len(cu), *cu))
print(T)
PY
)
# srv NAME COMMAND...: one checked command of this step
srv() {
	n=$1; shift
	SRV=$((SRV + 1))
	if run "$(cap 90)" "$@"; then say "  ok    $n"; else SRV_BAD=$((SRV_BAD + 1)); say "  FAIL  $n"; fi
}
GW=null
if [ -n "$T5" ]; then
	timeout "$(cap 60)" "$MTATUNE" grad --backend ref --inputs "$G" --grad-output "$G/expected.npy" \
		--out "$WORK/gref" >>"$LOG" 2>&1
	srv "grad $BACKEND" "$MTATUNE" grad --backend "$BACKEND" --inputs "$G" \
		--grad-output "$G/expected.npy" --out "$WORK/gdev"
	timeout "$(cap 30)" python3 bench/grad_compare.py "$WORK/gref" "$WORK/gdev" 1e-4 >"$WORK/gcmp" 2>&1
	rc=$?
	cat "$WORK/gcmp" >>"$LOG"
	GW=$(tail -n 1 "$WORK/gcmp" | sed -n 's/.*"worst": \([^,}]*\).*/\1/p')
	SRV=$((SRV + 1)); [ $rc -eq 0 ] || SRV_BAD=$((SRV_BAD + 1))
	say "  gradients vs the reference: worst rel L2 ${GW:-?} (exit $rc)"
	timeout "$(cap 60)" "$MTATUNE" grad --backend ref --inputs "$G" --grad-output "$G/expected.npy" \
		--cu-seqlens "$WORK/cu.npy" --out "$WORK/gvref" >>"$LOG" 2>&1
	srv "packed grad $BACKEND" "$MTATUNE" grad --backend "$BACKEND" --inputs "$G" \
		--grad-output "$G/expected.npy" --cu-seqlens "$WORK/cu.npy" --out "$WORK/gvdev"
	timeout "$(cap 30)" python3 bench/grad_compare.py "$WORK/gvref" "$WORK/gvdev" 1e-4 >>"$LOG" 2>&1
	rc=$?
	SRV=$((SRV + 1)); [ $rc -eq 0 ] || SRV_BAD=$((SRV_BAD + 1))
	say "  packed gradients vs the reference: exit $rc"
	for DT in f32 bf16; do
		timeout "$(cap 60)" "$MTATUNE" run --backend ref --dtype $DT --inputs "$G" --cu-seqlens "$WORK/cu.npy" \
			--out "$WORK/vref.npy" >>"$LOG" 2>&1
		srv "packed documents $DT" "$MTATUNE" run --backend "$BACKEND" --dtype $DT --inputs "$G" \
			--cu-seqlens "$WORK/cu.npy" --out "$WORK/vdev.npy" --expected "$WORK/vref.npy"
	done
	timeout "$(cap 60)" "$MTATUNE" run --backend ref --inputs "$G" --out "$WORK/fref.npy" >>"$LOG" 2>&1
	for N in 0 5 $((T5 - 1)); do
		srv "decode from $N" "$MTATUNE" run --backend "$BACKEND" --inputs "$G" --decode-from $N \
			--out "$WORK/ddev.npy" --expected "$WORK/fref.npy"
	done
	if [ $REHEARSE -eq 0 ]; then
		BP=h4kv2d32-pre3x5-hpre-post3x3-hc2-both-gnr-gate; BT=512; BB=2
	else
		BP=h2kv1d8-pre2x3-hpre-post2x3-hc2-both-gn-gate; BT=24; BB=1
	fi
	srv "tune --op bwd $BACKEND" "$MTATUNE" tune --op bwd --backend "$BACKEND" --problem $BP \
		--seq $BT --batch $BB --strategy random --budget 2 --reps 2 --warmup 0 --top 1 \
		--rounds 5 --rounds-budget 10 --timeout 60 --db "$DB" --quiet
	if [ $REHEARSE -eq 0 ]; then DT=2048; else DT=40; fi
	srv "tune --op decode $BACKEND" "$MTATUNE" tune --op decode --backend "$BACKEND" \
		--problem $BP --seq $DT --batch $BB --strategy random --budget 2 --reps 3 \
		--warmup 1 --top 1 --rounds 5 --rounds-budget 10 --timeout 60 --db "$DB" --quiet
else
	SRV_BAD=1
	say "  could not read T from $G/q.npy"
fi
[ $SRV_BAD -eq 0 ]
step serving $? "\"runs\": $SRV, \"failed\": $SRV_BAD, \"grad_worst\": ${GW:-null}"

# ---- summary -----------------------------------------------------------------
# the tuning database as one file (SQLite's online backup folds the WAL in)
timeout 30 python3 -c 'import sqlite3, sys
src, dst = sqlite3.connect(sys.argv[1]), sqlite3.connect(sys.argv[2])
src.backup(dst)
dst.close()
src.close()' "$DB" "$OUT/tune.db" >>"$LOG" 2>&1 || say "could not copy the tuning database"
say ""
say "gpu run: $([ $FAILED -eq 0 ] && echo 'all checks passed' || echo FAILED) in $(elapsed) s"
summary true
exit $FAILED
