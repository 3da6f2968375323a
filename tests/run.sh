#!/bin/sh
# run.sh: run the whole suite twice, a normal build then the
# AddressSanitizer + UndefinedBehaviorSanitizer build, then a short run of
# every libFuzzer target (tests/fuzz/run.sh) and the valgrind checks
# (tests/valgrind.sh), and print the total as the last line:
# "N passed, N failed". Exit status 1 on any failure.
cd "$(dirname "$0")/.." || exit 1
total_p=0; total_f=0
for b in normal san; do
	out=$(mktemp)
	MT_LABEL="[$b]" MTATUNE_BIN="$PWD/build/$b/mtatune" \
	ASAN_OPTIONS=detect_leaks=1:abort_on_error=0 UBSAN_OPTIONS=print_stacktrace=1 \
		"build/$b/test_runner" "$@" 2>&1 | tee "$out"
	line=$(grep -E '^\[[a-z]+\]: [0-9]+ ok, [0-9]+ failing$' "$out" | tail -n 1)
	if [ -z "$line" ]; then
		echo "[$b]: the test runner did not finish"
		total_f=$((total_f + 1))
	else
		p=$(echo "$line" | sed -E 's/.*: ([0-9]+) ok.*/\1/')
		f=$(echo "$line" | sed -E 's/.* ([0-9]+) failing$/\1/')
		total_p=$((total_p + p)); total_f=$((total_f + f))
	fi
	rm -f "$out"
done
# Stages that print their own "[name]: N ok, N failing" last.
stage() {
	name=$1; shift
	out=$(mktemp)
	"$@" 2>&1 | tee "$out"
	line=$(grep -E "^\[$name\]: [0-9]+ ok, [0-9]+ failing$" "$out" | tail -n 1)
	if [ -z "$line" ]; then
		echo "[$name]: did not finish"
		total_f=$((total_f + 1))
	else
		p=$(echo "$line" | sed -E 's/.*: ([0-9]+) ok.*/\1/')
		f=$(echo "$line" | sed -E 's/.* ([0-9]+) failing$/\1/')
		total_p=$((total_p + p)); total_f=$((total_f + f))
	fi
	rm -f "$out"
}
if [ $# -eq 0 ]; then
	stage fuzz sh tests/fuzz/run.sh short "${FUZZ_TEST_SECONDS:-5}"
	stage valgrind sh tests/valgrind.sh
fi
echo "$total_p passed, $total_f failed"
[ "$total_f" -eq 0 ]
