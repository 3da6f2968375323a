#!/usr/bin/env python3
"""docjobs.py DOC DIR TASKS TUNING: write the jobs of docs/slurm.md, in their
CPU form, into DIR, so that the Slurm test runs what the page tells users to
run rather than a copy that could drift from it.

From DOC (docs/slurm.md) it takes the code blocks under the headings naming
"CPU partition" (the array job's CPU form), `sweep/merge.sbatch` and
"Submitting", and writes DIR/sweep/shards.sbatch, DIR/sweep/merge.sbatch and
DIR/submit.sh. The array job is sized for a small test machine:
--array=1-TASKS, one CPU per task, and the tuning options TUNING (e.g.
"--strategy random --budget 3 --seed 1") after `mtatune sweep`; the grid is
the test's own (not written here). Everything else is the page's text
unchanged. It also holds the page's GPU array job to its CPU form: the same
#SBATCH lines but --gres, the same --grid, --shard and --db.

Exits 1 with a message naming what it did not find when the page's shape
changed: then update this file and the page together.
"""
import os
import re
import sys


def fail(msg):
    sys.stderr.write("docjobs.py: %s\n" % msg)
    sys.exit(1)


def block_after(text, heading_re):
    """The first indented (4 spaces) code block after the heading matching
    heading_re, dedented."""
    m = re.search(r"^#+ .*" + heading_re + r".*$", text, re.M)
    if not m:
        fail("no heading matching %r in the page" % heading_re)
    lines = text[m.end():].split("\n")
    out, started = [], False
    for line in lines:
        if line.startswith("#"):
            break
        if line.startswith("    "):
            started = True
            out.append(line[4:])
        elif started and line.strip() == "":
            out.append("")
        elif started:
            break
    while out and out[-1] == "":
        out.pop()
    if not out:
        fail("no code block under the heading matching %r" % heading_re)
    return "\n".join(out) + "\n"


def sub_once(pattern, repl, text, what):
    new, n = re.subn(pattern, repl, text, flags=re.M)
    if n != 1:
        fail("the CPU array job: expected one %s, found %d" % (what, n))
    return new


def sized(job, tasks, tuning):
    """The CPU array job for TASKS tasks of one CPU, searching with TUNING."""
    job = sub_once(r"^#SBATCH --array=.*$", "#SBATCH --array=1-%d" % tasks, job,
                   "#SBATCH --array line")
    job = sub_once(r"^#SBATCH --cpus-per-task=.*$", "#SBATCH --cpus-per-task=1", job,
                   "#SBATCH --cpus-per-task line")
    job = sub_once(r"\bmtatune sweep ", "mtatune sweep %s " % tuning, job, "mtatune sweep")
    return job


def same_job(gpu, cpu):
    """Fail unless the two array jobs differ only in what runs on the GPUs."""
    def sbatch(job):
        return [l for l in job.split("\n") if l.startswith("#SBATCH") and "--gres" not in l]
    if sbatch(gpu) != sbatch(cpu):
        fail("the GPU and CPU array jobs have different #SBATCH lines (--gres aside):\n%s\n%s"
             % ("\n".join(sbatch(gpu)), "\n".join(sbatch(cpu))))
    for need in ("mtatune sweep --grid sweep/grid.txt",
                 "--shard \"$SLURM_ARRAY_TASK_ID/$SLURM_ARRAY_TASK_COUNT\"",
                 "--db \"sweep/db/shard-$SLURM_ARRAY_TASK_ID.db\"", "mkdir -p sweep/db"):
        for name, job in (("GPU", gpu), ("CPU", cpu)):
            if need not in job:
                fail("the %s array job does not contain %s" % (name, need))
    for line in cpu.split("\n"):
        if re.search(r"--gres|--backend|--devices", line):
            fail("the CPU array job still has: %s" % line)


def main():
    if len(sys.argv) != 5:
        fail("usage: docjobs.py DOC DIR TASKS TUNING")
    doc, outdir, tasks, tuning = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
    with open(doc, encoding="utf-8") as f:
        text = f.read()
    cpu = block_after(text, r"CPU partition")
    same_job(block_after(text, r"`sweep/shards\.sbatch`"), cpu)
    shards = sized(cpu, tasks, tuning)
    merge = block_after(text, r"`sweep/merge\.sbatch`")
    submit = block_after(text, r"Submitting")
    for need in ("mtatune db merge sweep/all.db sweep/db/shard-*.db", "mtatune report"):
        if need not in merge:
            fail("the merge job does not contain %s" % need)
    if "mkdir -p sweep/logs" not in submit or \
       "sbatch --parsable sweep/shards.sbatch" not in submit or \
       "--dependency=afterany:$jid sweep/merge.sbatch" not in submit:
        fail("the submission block does not make sweep/logs, submit shards.sbatch and then "
             "merge.sbatch after it")
    os.makedirs(os.path.join(outdir, "sweep"), exist_ok=True)
    for name, body in (("sweep/shards.sbatch", shards), ("sweep/merge.sbatch", merge),
                       ("submit.sh", submit)):
        with open(os.path.join(outdir, name), "w", encoding="utf-8") as f:
            f.write(body)


main()
