#!/bin/sh
# tests/valgrind.sh: the CLI and a runtime program (tests/valgrind/vg_runtime.c)
# under valgrind memcheck, success and error paths: no definite or indirect
# leak, no invalid access, no use of uninitialised memory. Each command is
# one test; prints "[valgrind]: N ok, N failing" last. The tuner's forked
# measuring children are not checked (--child-silent-after-fork), and the
# compiler it runs is not traced. Kernels are built with AVX2 at most
# (tests/valgrind/cc-for-valgrind) in their own cache: valgrind cannot run AVX-512.
cd "$(dirname "$0")/.." || exit 1
bin=build/normal/mtatune
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
export MTATUNE_CC="$PWD/tests/valgrind/cc-for-valgrind" MTATUNE_CACHE="$PWD/build/vgcache"
export MTATUNE_DB="$tmp/default.db"
golden=${MTA_GOLDEN:-../shared/golden}/dev-full
tiny="--problem h2kv1d8-both-f32 --seq 8 --reps 1 --warmup 0 --top 1 --strategy random --budget 2 --seed 5 --threads 1 -q"
ok=0; bad=0
# check NAME EXPECTED-EXIT COMMAND...
check() {
	name=$1; want=$2; shift 2
	valgrind -q --leak-check=full --errors-for-leak-kinds=definite,indirect \
		--error-exitcode=99 --child-silent-after-fork=yes "$@" >"$tmp/out" 2>&1
	got=$?
	if [ "$got" -eq "$want" ]; then
		ok=$((ok + 1)); echo "  ok    valgrind $name"
	else
		bad=$((bad + 1)); echo "  FAIL  valgrind $name: exit $got, expected $want"
		tail -n 40 "$tmp/out"
	fi
}
check run-ref 0 $bin run --backend ref --inputs "$golden" --out "$tmp/o.npy" \
	--expected "$golden/expected.npy"
check run-cpu 0 $bin run --backend cpu --inputs "$golden" --out "$tmp/o.npy" \
	--expected "$golden/expected.npy"
check tune 0 $bin tune $tiny --db "$tmp/t.db"
check list 0 $bin list results --db "$tmp/t.db"
check best 0 $bin best --problem h2kv1d8-both-f32 --seq 8 --db "$tmp/t.db"
check gen 0 $bin gen --problem h4kv4d8-pre3x5-hpre-both-gn-gate-f32
check run-missing-inputs 3 $bin run --inputs "$tmp/none" --out "$tmp/o.npy"
echo "not a database" > "$tmp/bad.db"
check tune-bad-db 3 $bin tune $tiny --db "$tmp/bad.db"
check bad-option 2 $bin tune --seq x
check runtime-api 0 build/normal/vg_runtime "$tmp/t.db"
check runtime-api-no-db 0 build/normal/vg_runtime "$tmp/none.db"
echo "[valgrind]: $ok ok, $bad failing"
[ "$bad" -eq 0 ]
