#!/bin/sh
# tests/slurm/run.sh [--if-installed]: the cluster path of docs/slurm.md on a
# real, one-node Slurm (Debian's slurm-wlm and munge; make test-slurm installs
# them).
#
# In a temporary folder: a munge key and munged on its own socket; a slurm.conf
# naming this host (`hostname -s`) with its own ports and every state, spool,
# pid and log file in the folder; slurmctld and slurmd. Once sinfo shows the
# node idle, the page's jobs in their CPU form (tests/slurm/docjobs.py takes
# them from docs/slurm.md) are submitted the page's way, the array of shards
# then the merge after it, on a small grid; then tests/slurm/check.py checks
# the shard databases, the merged winners against the shards' and the report.
# The daemons are stopped (by their pid files) and the folder removed on every
# exit, failure or signal included.
#
# Each check is one test; prints "[slurm]: N ok, N failing" last and exits 1 on
# a failure. Without Slurm or munge installed this fails, except with
# --if-installed (make test) when the user is not root and so could not have
# installed them: then it says the test did not run and counts nothing.
cd "$(dirname "$0")/../.." || exit 1
top=$PWD
PATH=$top/bin:$PATH:/usr/sbin:/sbin
export PATH
ok=0; bad=0
pass() { ok=$((ok + 1)); echo "  ok    slurm $1"; }
fail() { bad=$((bad + 1)); echo "  FAIL  slurm $1"; }
finish() { echo "[slurm]: $ok ok, $bad failing"; [ "$bad" -eq 0 ]; exit $?; }

# The grid (one small problem, powers of two so that each T is its bucket),
# the array's size and the tuning options that keep it to about a minute.
PROBLEM=h2kv2d16-pre3x3-both-f32
SEQS="32 64"
BATCHES="1 2"
TASKS=2
TUNING="--strategy random --budget 3 --seed 1"
UP_SECONDS=30      # for the node to show idle
JOB_SECONDS=300    # for both jobs to end

need="munged slurmctld slurmd sbatch squeue sinfo scontrol scancel srun"
missing=""
for b in $need; do command -v "$b" >/dev/null 2>&1 || missing="$missing $b"; done
if [ -n "$missing" ]; then
	if [ "${1:-}" = --if-installed ] && [ "$(id -u)" -ne 0 ]; then
		echo "  slurm: NOT RUN: missing$missing (Debian's slurm-wlm and munge; as root,"
		echo "  make test-slurm installs them)"
		finish
	fi
	fail "installed: missing$missing (make test-slurm installs slurm-wlm and munge)"
	finish
fi
if [ ! -x bin/mtatune ]; then
	fail "bin/mtatune: not built (make test-slurm builds it)"
	finish
fi

# Unix socket paths are limited to 108 bytes: a short folder under /tmp.
tmp=$(mktemp -d /tmp/mtatune-slurm.XXXXXX) || { fail "mktemp"; finish; }
conf=$tmp/etc/slurm.conf
export SLURM_CONF="$conf"
# Every pid file holds the id of a daemon this script started; stop those and
# nothing else. Jobs first (slurmstepd kills their processes), then the
# daemons through slurmctld, then what is still running by signal.
cleanup() {
	trap - EXIT INT TERM HUP
	if [ -f "$tmp/slurmctld.pid" ]; then
		scancel --quiet --full --user="$(id -un)" >/dev/null 2>&1
		i=0
		while [ $i -lt 20 ] && [ -n "$(squeue -h -o %i 2>/dev/null)" ]; do
			sleep 0.5; i=$((i + 1))
		done
		scontrol shutdown >/dev/null 2>&1
	fi
	# slurmd and slurmctld get 3 s to obey the shutdown, munged none
	for f in slurmd:6 slurmctld:6 munged:0; do
		pid=$(cat "$tmp/${f%:*}.pid" 2>/dev/null) || continue
		[ -n "$pid" ] || continue
		i=0
		while kill -0 "$pid" 2>/dev/null && [ $i -lt 20 ]; do
			[ $i -eq "${f#*:}" ] && kill -TERM "$pid" 2>/dev/null
			sleep 0.5; i=$((i + 1))
		done
		kill -0 "$pid" 2>/dev/null && kill -KILL "$pid" 2>/dev/null
	done
	rm -rf "$tmp"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM HUP

# Show the daemons' logs and the jobs' output after a failure.
show_logs() {
	for f in "$tmp"/log/* "$tmp"/work/sweep/logs/*; do
		[ -f "$f" ] || continue
		echo "---- ${f#"$tmp"/} (last lines)"
		tail -n 25 "$f"
	done
}

mkdir -p "$tmp/etc" "$tmp/munge" "$tmp/run" "$tmp/log" "$tmp/state" "$tmp/spool" \
	"$tmp/cache" "$tmp/work"
# munged wants every folder above its socket searchable by all (clients of
# any user connect); its key stays private.
chmod 711 "$tmp"
chmod 755 "$tmp/run"
chmod 700 "$tmp/munge" "$tmp/cache"

# munge: its own key, socket, pid, log and seed files.
if command -v mungekey >/dev/null 2>&1; then
	mungekey --create --keyfile="$tmp/munge/munge.key" >/dev/null 2>&1
else
	dd if=/dev/urandom of="$tmp/munge/munge.key" bs=1024 count=1 2>/dev/null
fi
chmod 600 "$tmp/munge/munge.key"
if ! munged --key-file="$tmp/munge/munge.key" --socket="$tmp/run/munge.sock" \
	--pid-file="$tmp/munged.pid" --log-file="$tmp/log/munged.log" \
	--seed-file="$tmp/munge/munged.seed" >"$tmp/log/munged.out" 2>&1; then
	cat "$tmp/log/munged.out"
	fail "cluster-up: munged did not start"
	show_logs; finish
fi

# Two free TCP ports for slurmctld and slurmd (the system's 6817/6818 may be
# taken, as may another run's).
ports=$(python3 -c 'import socket
s = [socket.socket() for _ in range(2)]
for x in s: x.bind(("127.0.0.1", 0))
print(" ".join(str(x.getsockname()[1]) for x in s))') || { fail "cluster-up: no free ports"; finish; }
set -- $ports
host=$(hostname -s)
user=$(id -un)
# The node as slurmd sees it (CPUs, sockets, cores, memory), so that it is not
# drained for differing from its configuration.
node=$(slurmd -C 2>/dev/null | grep '^NodeName=') || node="NodeName=$host CPUs=$(nproc)"
cat >"$conf" <<EOF
# A one-node cluster for tests/slurm/run.sh; everything lives in $tmp.
ClusterName=mtatest
SlurmctldHost=$host(127.0.0.1)
SlurmUser=$user
SlurmdUser=$user
SlurmctldPort=$1
SlurmdPort=$2
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket=$tmp/run/munge.sock
StateSaveLocation=$tmp/state
SlurmdSpoolDir=$tmp/spool
SlurmctldPidFile=$tmp/slurmctld.pid
SlurmdPidFile=$tmp/slurmd.pid
SlurmctldLogFile=$tmp/log/slurmctld.log
SlurmdLogFile=$tmp/log/slurmd.log
PlugStackConfig=$tmp/etc/plugstack.conf
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
SchedulerType=sched/backfill
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
MpiDefault=none
ReturnToService=2
MinJobAge=600
MailProg=/bin/true
$node NodeAddr=127.0.0.1 State=UNKNOWN
PartitionName=test Nodes=$host Default=YES MaxTime=INFINITE State=UP
EOF
: >"$tmp/etc/plugstack.conf"

if ! slurmctld -f "$conf" >"$tmp/log/slurmctld.out" 2>&1 ||
   ! slurmd -f "$conf" -N "$host" >"$tmp/log/slurmd.out" 2>&1; then
	cat "$tmp"/log/*.out
	fail "cluster-up: slurmctld or slurmd did not start"
	show_logs; finish
fi
i=0; state=""
while [ $i -lt $((UP_SECONDS * 2)) ]; do
	state=$(sinfo -h -N -n "$host" -o %T 2>/dev/null)
	[ "$state" = idle ] && break
	sleep 0.5; i=$((i + 1))
done
if [ "$state" != idle ]; then
	fail "cluster-up: node $host is '${state:-not listed}' after ${UP_SECONDS}s, expected idle"
	sinfo -N -l 2>&1
	show_logs; finish
fi
pass "cluster-up ($host idle after $((i / 2)).$((i % 2 * 5))s, Slurm $(sinfo -V | cut -d' ' -f2))"

# The page's jobs and submission, in the CPU form, on the test's grid.
work=$tmp/work
if ! python3 tests/slurm/docjobs.py docs/slurm.md "$work" "$TASKS" "$TUNING"; then
	fail "docs/slurm.md: its jobs could not be read (see above)"
	finish
fi
{
	echo "problem $PROBLEM"
	echo "seq     $SEQS"
	echo "batch   $BATCHES"
} >"$work/sweep/grid.txt"
# The jobs inherit this environment: kernels compile into a private cache.
export MTATUNE_CACHE="$tmp/cache"
unset MTATUNE_DB
start=$(date +%s)
out=$(cd "$work" && set -e && . ./submit.sh 2>&1 && echo "array $jid")
array=$(echo "$out" | sed -n 's/^array \([0-9][0-9]*\)$/\1/p')
merge=$(echo "$out" | sed -n 's/^Submitted batch job \([0-9][0-9]*\)$/\1/p')
if [ -z "$array" ] || [ -z "$merge" ]; then
	echo "$out"
	fail "submit: the page's submission did not give two job ids"
	show_logs; finish
fi
pass "submit (array job $array, merge job $merge)"

i=0
while [ $i -lt $((JOB_SECONDS * 2)) ] && [ -n "$(squeue -h -o %i 2>/dev/null)" ]; do
	sleep 0.5; i=$((i + 1))
done
took=$(($(date +%s) - start))
if [ -n "$(squeue -h -o %i 2>/dev/null)" ]; then
	squeue -l 2>&1
	fail "jobs: still queued or running after ${JOB_SECONDS}s"
	show_logs; finish
fi
# Each array task and the merge job: COMPLETED with exit code 0.
states=$(scontrol -o show job "$array" 2>&1; scontrol -o show job "$merge" 2>&1)
done_ok=$(echo "$states" | grep -c 'JobState=COMPLETED .* ExitCode=0:0')
if [ "$done_ok" -eq $((TASKS + 1)) ]; then
	pass "jobs ($TASKS array tasks and the merge completed in ${took}s)"
else
	echo "$states" | grep -o 'JobId=[0-9]* .*JobName=[^ ]*\|JobState=[^ ]* Reason=[^ ]*\|ExitCode=[^ ]*'
	fail "jobs: $done_ok of $((TASKS + 1)) completed with exit code 0"
	show_logs
fi

if python3 tests/slurm/check.py "$top/bin/mtatune" "$work" "$TASKS" "$PROBLEM" "$SEQS" \
	"$BATCHES" >"$tmp/check.out" 2>&1; then :; else show_logs; fi
cat "$tmp/check.out"
ok=$((ok + $(grep -c '^  ok ' "$tmp/check.out")))
bad=$((bad + $(grep -c '^  FAIL ' "$tmp/check.out")))
finish
