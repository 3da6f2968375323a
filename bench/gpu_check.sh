#!/bin/sh
# gpu_check.sh: `make gpu-check`, the checks only a machine with a GPU can run.
#
#   1. every variant of the default CUDA space of three problems (the paper's
#      bf16 configuration, a small f32 one with every part of MTA, a GQA
#      left-padded f16 one) checked against the float64 reference ON THE GPU:
#      an exhaustive `mtatune tune --backend cuda` at a short length, each
#      variant verified (pruned and compile-failed ones are listed as such);
#   2. compute-sanitizer memcheck and racecheck over `mtatune run --backend
#      cuda` on a few golden cases (default variant, checked vs expected.npy);
#   3. one real tuning run of the paper configuration.
# Everything, with the date, device, commit and the exact commands, goes to
# docs/gpu/gpu-check-<date>.txt; commit that file. Exit status 1 if any check
# failed. Environment: MTATUNE (the binary; default: build it), MTA_GOLDEN
# (golden cases), GPU_CHECK_SEQ (tuning length, default 4096).
cd "$(dirname "$0")/.." || exit 1

fail() { echo "gpu-check: $*" >&2; exit 1; }

# Fail fast where no driver can be loaded at all.
if [ -z "$MTATUNE_LIBCUDA" ] && ! ldconfig -p 2>/dev/null | grep -q 'libcuda\.so\.1'; then
	fail "no CUDA device: run this on a GPU machine (no libcuda.so.1 on this one)"
fi
if [ -z "$MTATUNE" ]; then
	make --no-print-directory B=build/normal build/normal/mtatune >/dev/null || fail "build failed"
	MTATUNE=build/normal/mtatune
fi
devs=$("$MTATUNE" devices 2>&1)
echo "$devs" | grep -q '^cuda 0:' || fail "no CUDA device: run this on a GPU machine
$devs"

GOLDEN=${MTA_GOLDEN:-}
for g in shared/golden ../shared/golden; do
	[ -z "$GOLDEN" ] && [ -d "$g" ] && GOLDEN=$g
done
SEQ=${GPU_CHECK_SEQ:-4096}
PAPER=h16kv16d96-pre6x11-hpre-post6x11-hc16-both-gn-gate-bf16
PROBLEMS="$PAPER h4kv4d32-pre3x5-hpre-post3x5-hc4-both-gn-gate-f32 h8kv2d64-pre3x5-post3x5-hc2-left-gnr-f16"
CASES="dev-full dev-gqa dev-kq-pre-left"

stamp=$(date -u +%Y%m%d-%H%M%S)
mkdir -p docs/gpu
REPORT=docs/gpu/gpu-check-$stamp.txt
WORK=$(mktemp -d)
DB=$WORK/gpu-check.db
bad=0
: >"$REPORT"

say() { echo "$*" | tee -a "$REPORT"; }
# Run a command, logging it exactly and its output; remember a failure.
run() {
	say "\$ $*"
	"$@" >>"$REPORT" 2>&1
	rc=$?
	say "[exit $rc]"
	[ $rc -eq 0 ] || bad=1
	return $rc
}

say "mtatune gpu-check"
say "date:   $(date -u '+%Y-%m-%d %H:%M:%S UTC')"
say "host:   $(uname -n) $(uname -m)"
say "commit: $(git rev-parse HEAD 2>/dev/null || echo unknown)$(git diff --quiet HEAD 2>/dev/null || echo ' (with uncommitted changes)')"
say "$devs"
command -v nvidia-smi >/dev/null && say "$(nvidia-smi --query-gpu=name,driver_version,clocks.max.sm --format=csv,noheader 2>&1)"
say ""

say "== 1. every variant against the reference on the GPU =="
for p in $PROBLEMS; do
	run "$MTATUNE" tune --backend cuda --problem "$p" --seq 256 --reps 1 --warmup 0 --top 1 \
		--db "$DB" --quiet
	run "$MTATUNE" list results --problem "$p" --db "$DB"
	# the status is the fifth column of `list results`
	n=$("$MTATUNE" list results --problem "$p" --db "$DB" 2>&1 |
		awk '$5 ~ /^(verify_failed|crashed|timeout|error)$/' | wc -l)
	if [ "$n" -ne 0 ]; then
		say "FAIL: $n variants of $p failed on the GPU"
		bad=1
	fi
done

say ""
say "== 2. compute-sanitizer =="
if ! command -v compute-sanitizer >/dev/null; then
	say "FAIL: compute-sanitizer not found"
	bad=1
elif [ -z "$GOLDEN" ]; then
	say "FAIL: no golden cases (set MTA_GOLDEN)"
	bad=1
else
	for c in $CASES; do
		cfg=$GOLDEN/$c/config.json
		pad=$(sed -n 's/.*"pad_key": *"\([a-z]*\)".*/\1/p' "$cfg")
		lid=$(sed -n 's/.*"layer_id": *\([0-9]*\).*/\1/p' "$cfg")
		for tool in memcheck racecheck; do
			run compute-sanitizer --tool $tool --error-exitcode 9 \
				"$MTATUNE" run --backend cuda --db "$WORK/none.db" --inputs "$GOLDEN/$c" \
				--out "$WORK/o.npy" --pad-key "${pad:-both}" ${lid:+--layer-id $lid} \
				--expected "$GOLDEN/$c/expected.npy"
		done
	done
fi

say ""
say "== 3. one tuning run =="
run "$MTATUNE" tune --backend cuda --problem "$PAPER" --seq "$SEQ" --reps 10 --warmup 2 --top 3 \
	--db "$DB" --quiet
run "$MTATUNE" best --db "$DB"

say ""
if [ $bad -eq 0 ]; then say "gpu-check: all checks passed"; else say "gpu-check: FAILED (see above)"; fi
rm -rf "$WORK"
echo "report: $REPORT"
exit $bad
