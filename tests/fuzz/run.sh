#!/bin/sh
# tests/fuzz/run.sh: run every libFuzzer target built in build/fuzz.
#
#   sh tests/fuzz/run.sh short [SECONDS]   (make test; default 5 s each) new
#        inputs go to a scratch folder, the committed seeds stay as they are
#   sh tests/fuzz/run.sh long SECONDS      (make fuzz) new inputs are kept in
#        build/fuzz/corpus/NAME, crashes land in tests/fuzz/crashes/NAME/
#
# First every reproducer in tests/fuzz/crashes/NAME/ is run once (each is a
# regression test: it crashed once and must not any more), then the target
# fuzzes from its seeds. Prints one line per target with its number of
# executions, and last "[fuzz]: N ok, N failing"; exit status 1 on a failure.
cd "$(dirname "$0")/../.." || exit 1
top=$PWD
mode=${1:-short}
secs=${2:-5}
ok=0; bad=0
for bin in build/fuzz/fuzz_*; do
	[ -x "$bin" ] || continue
	name=${bin#build/fuzz/fuzz_}
	seeds=$top/tests/fuzz/corpus/$name
	crashes=$top/tests/fuzz/crashes/$name
	extra=""
	[ "$name" = cli ] && extra="-close_fd_mask=3"
	log=$(mktemp)
	status=0
	if [ -d "$crashes" ] && [ -n "$(ls -A "$crashes")" ]; then
		"$bin" $extra -runs=1 "$crashes"/* >"$log" 2>&1 || status=1
		if [ $status -ne 0 ]; then
			echo "fuzz_$name: a crash reproducer in $crashes fails again:"
			tail -n 30 "$log"
		fi
	fi
	if [ $status -eq 0 ]; then
		if [ "$mode" = long ]; then
			work=$top/build/fuzz/corpus/$name
			mkdir -p "$work" "$crashes"
			art="$crashes/"
		else
			work=$(mktemp -d)
			mkdir -p "$top/build/fuzz/artifacts"
			art=$top/build/fuzz/artifacts/$name-
		fi
		"$bin" $extra -max_total_time="$secs" -timeout=10 -rss_limit_mb=2048 \
			-artifact_prefix="$art" "$work" "$seeds" >"$log" 2>&1 || status=1
		[ "$mode" = long ] || rm -rf "$work"
		runs=$(sed -nE 's/^Done ([0-9]+) runs in ([0-9]+) second.*/\1 executions in \2 s/p' "$log")
		if [ $status -eq 0 ]; then
			echo "ok   fuzz_$name: ${runs:-? executions}"
		else
			echo "FAIL fuzz_$name (reproducer in ${art}*):"
			tail -n 40 "$log"
		fi
	fi
	rm -f "$log"
	if [ $status -eq 0 ]; then ok=$((ok + 1)); else bad=$((bad + 1)); fi
done
echo "[fuzz]: $ok ok, $bad failing"
[ "$bad" -eq 0 ]
