#!/bin/sh
# run.sh: run the whole suite twice, a normal build then the
# AddressSanitizer + UndefinedBehaviorSanitizer build (which leaves the
# compile-bound tests, TEST_COMPILE_BOUND in tests/harness.h, to the normal
# build: their minutes go to NVRTC, not to our code), then (when no test
# names are given) the Python package's tests in .venv (python/tests/run.py;
# `make python` makes the venv, and without it they count as failed), every
# example of README.md (tests/readme.py), a short
# run of every libFuzzer target (tests/fuzz/run.sh), the valgrind checks
# (tests/valgrind.sh), the rehearsal of the prepared GPU run
# (bench/gpu_rehearse.sh, the emulator standing in for the GPU; needs `make
# gpu-pack`) and the Slurm cluster test (tests/slurm/run.sh; it says so and
# counts nothing when Slurm is not installed and the user is not root, who
# could have installed it), those six two at a time, and print the total as
# the last line: "N passed, N failed". Exit status 1 on any failure.
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

for b in normal san; do
	out=$(mktemp)
	MT_LABEL="[$b]" MTATUNE_BIN="$PWD/build/$b/mtatune" \
	ASAN_OPTIONS=detect_leaks=1:abort_on_error=0 UBSAN_OPTIONS=print_stacktrace=1 \
		"build/$b/test_runner" "$@" 2>&1 | tee "$out"
	tally "$b" "$out"
	rm -f "$out"
done
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
	# The other stages in two lanes at once (each mostly one process on one
	# core; the README's tuning run is the longest), each stage's output
	# printed whole when both lanes are done.
	dir=$(mktemp -d)
	echo "stages python, readme, fuzz, valgrind, gpu-rehearse and slurm: two at a time..."
	( for s in readme python slurm; do stage $s "$dir/$s"; done ) &
	( for s in gpu-rehearse valgrind fuzz; do stage $s "$dir/$s"; done ) &
	wait
	for s in python readme fuzz valgrind gpu-rehearse slurm; do
		cat "$dir/$s"
		tally $s "$dir/$s"
	done
	rm -rf "$dir"
fi
echo "$total_p passed, $total_f failed"
[ "$total_f" -eq 0 ]
