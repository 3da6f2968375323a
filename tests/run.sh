#!/bin/sh
# run.sh: run the whole suite twice, a normal build then the
# AddressSanitizer + UndefinedBehaviorSanitizer build (which leaves the
# compile-bound tests, TEST_COMPILE_BOUND in tests/harness.h, to the normal
# build: their minutes go to NVRTC, the C compiler or uninstrumented kernels
# on the emulator, not to our code; see also mt_sanitized()), then (when no test
# names are given) the Python package's tests in .venv (python/tests/run.py;
# `make python` makes the venv, and without it they count as failed), every
# example of README.md (tests/readme.py), a short
# run of every libFuzzer target (tests/fuzz/run.sh), the valgrind checks
# (tests/valgrind.sh), the rehearsal of the prepared GPU run
# (bench/gpu_rehearse.sh, the emulator standing in for the GPU; needs `make
# gpu-pack`) and the Slurm cluster test (tests/slurm/run.sh; it says so and
# counts nothing when Slurm is not installed and the user is not root, who
# could have installed it), and print the total as the last line: "N passed,
# N failed". Exit status 1 on any failure.
#
# Scheduling, for the wall time (each stage keeps its own output and
# verdict): the Slurm test, which mostly waits on its daemons and its jobs
# (some 15 s of small tunes in 30-60 s), starts in the background with the
# normal build's tests and ends long before their TEST_TIMED tests, which
# want the machine to themselves (it has 30 s to come up and 300 s for its
# jobs, the normal stage takes ten minutes or more, and the runner's first
# timed test waits for the file MT_TIMED_AFTER, made when it ends, should it
# not have). The other five stages run in two lanes that each take the next
# stage not yet taken, the longest first, so that neither lane idles while
# the other has two stages left.
cd "$(dirname "$0")/.." || exit 1
total_p=0; total_f=0

# Add the counts of the last "[name]: N ok, N failing" line of file to the totals.
tally() {
	line=$(grep -E "^\[$1\]: [0-9]+ ok, [0-9]+ failing$" "$2" | tail -n 1)
	if [ -z "$line" ]; then
		echo "[$1]: did not finish"
		total_f=$((total_f + 1))
	else
		p=$(echo "$line" | sed -E 's/.*: ([0-9]+) ok.*/\1/')
		f=$(echo "$line" | sed -E 's/.* ([0-9]+) failing$/\1/')
		total_p=$((total_p + p)); total_f=$((total_f + f))
	fi
}

# One stage's output into $2 (the tally reads it).
stage() {
	case $1 in
	python)
		if [ -x .venv/bin/python ]; then
			MT_LABEL="[python]" .venv/bin/python python/tests/run.py
		else
			echo "[python]: no .venv/bin/python: run make python (needs PyTorch)"
		fi ;;
	readme) python3 tests/readme.py ;;
	fuzz) sh tests/fuzz/run.sh short "${FUZZ_TEST_SECONDS:-5}" ;;
	valgrind) sh tests/valgrind.sh ;;
	gpu-rehearse) sh bench/gpu_rehearse.sh ;;
	slurm) sh tests/slurm/run.sh --if-installed ;;
	esac >"$2" 2>&1
}

if [ $# -eq 0 ]; then
	dir=$(mktemp -d)
	( stage slurm "$dir/slurm"; : >"$dir/slurm.done" ) &
	MT_TIMED_AFTER="$dir/slurm.done"
	export MT_TIMED_AFTER
fi

for b in normal san; do
	out=$(mktemp)
	MT_LABEL="[$b]" MTATUNE_BIN="$PWD/build/$b/mtatune" \
	ASAN_OPTIONS=detect_leaks=1:abort_on_error=0 UBSAN_OPTIONS=print_stacktrace=1 \
		"build/$b/test_runner" "$@" 2>&1 | tee "$out"
	tally "$b" "$out"
	rm -f "$out"
done
if [ $# -eq 0 ]; then
	# Two lanes; a lane takes a stage by making its claim folder (mkdir is
	# atomic: each stage runs once), in this order, the longest first.
	lane() {
		for s in gpu-rehearse readme valgrind fuzz python; do
			mkdir "$dir/claim-$s" 2>/dev/null || continue
			stage "$s" "$dir/$s"
		done
	}
	echo "stages python, readme, fuzz, valgrind and gpu-rehearse: two at a time" \
		"(slurm since the start)..."
	lane &
	lane &
	wait
	for s in python readme fuzz valgrind gpu-rehearse slurm; do
		cat "$dir/$s"
		tally $s "$dir/$s"
	done
	rm -rf "$dir"
fi
echo "$total_p passed, $total_f failed"
[ "$total_f" -eq 0 ]
