#!/usr/bin/env python3
"""readme.py: run every example of README.md, as a reader on a fresh machine would.

The README's indented code blocks are the examples. Each block is one of:

- a C file: its first line is a comment naming it, "/* app.c: ... */";
  written into the work folder;
- a Python program: it starts with "import" or "from"; run with
  .venv/bin/python;
- a transcript: lines "$ command" followed by what the command prints;
  "$ cat FILE" followed by lines writes FILE with those lines; for any
  other command each printed line must show up in what it really printed:
  a line with a label ("winner: ...", "all.db: 360 results") by its label
  (the numbers are this machine's), any other line exactly; progress lines
  ("[###  ]"), "..." and the indented continuation of a labelled line
  (which says what was decided, and that varies) are not compared;
- the text of `mtatune CMD --help` ("usage: mtatune ..."), which
  tests/test_cli_help.c compares with the program: not run here;
- commands, one per line ('#' comments and trailing '\\' continuations
  allowed).

Commands run in a work folder in which bin, lib, python and .venv are the
repository's and ../shared is the repository's ../shared, with a fresh HOME
(so a fresh default database) and the test suite's kernel cache. Every
command must exit 0. Lines that are synopses, not examples (they hold a
placeholder: KEY, T, DIR, [options], a|b) are skipped, and so are make
targets other than `make -C`: `make test` is what runs this, `make python`
and `make gpu-pack` run before it, and `make gpu-check` needs a GPU. A
line that is none of these fails the test, so a new example cannot go
untested. Each distinct command runs once (the README names the main job
twice: as the command, then with its output).

Prints "[readme]: N ok, N failing" last, as tests/run.sh counts it.
"""
import os
import re
import shutil
import subprocess
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PLACEHOLDER = re.compile(r"\b(KEY|T|B|N|X|P|S|K/N|ID|NAME|DIR|FILE|SPEC|PATH|OUTDIR|LIST|"
                         r"DO\.npy|FILE\.npy)\b|\[|\|")
RUNNABLE = ("bin/mtatune ", "make -C ", "cc ", "./", ".venv/bin/python ")
TIMEOUT = int(os.environ.get("README_TIMEOUT", "900"))


def blocks(text):
    """The indented code blocks of markdown text: lists of lines, indent removed."""
    out, cur, prev_blank = [], None, True
    for line in text.split("\n"):
        if cur is not None:
            if line.startswith("    ") or not line.strip():
                cur.append(line[4:])
                continue
            out.append(cur)
            cur = None
        if line.startswith("    ") and prev_blank:
            cur = [line[4:]]
        prev_blank = not line.strip()
    if cur is not None:
        out.append(cur)
    result = []
    for b in out:
        while b and not b[-1].strip():
            b.pop()
        if b:
            result.append(b)
    return result


def commands(lines):
    """Join '\\' continuations, drop '#' comments (outside quotes) and blank lines."""
    out, acc = [], ""
    for line in lines:
        acc += line.rstrip()
        if acc.endswith("\\"):
            acc = acc[:-1] + " "
            continue
        cmd = strip_comment(acc).strip()
        acc = ""
        if cmd:
            out.append(re.sub(r"\s+", " ", cmd))
    return out


def strip_comment(s):
    quote = None
    for i, ch in enumerate(s):
        if quote:
            if ch == quote:
                quote = None
        elif ch in "'\"":
            quote = ch
        elif ch == "#" and (i == 0 or s[i - 1] in " \t"):
            return s[:i]
    return s


class Runner:
    def __init__(self, work, env):
        self.work, self.env, self.seen = work, env, {}
        self.ok = self.failed = self.skipped = 0

    def result(self, good, what, detail=""):
        if good:
            self.ok += 1
            print(f"  ok    {what}")
        else:
            self.failed += 1
            print(f"  FAIL  {what}")
            for line in detail.rstrip().split("\n")[-25:]:
                print(f"    {line}")
        sys.stdout.flush()

    def run(self, cmd):
        """Run cmd once (later calls return the first output); None when skipped."""
        if cmd.startswith("make && "):     # the main job after the build: make has run
            cmd = cmd[len("make && "):]
        if cmd in self.seen:
            return self.seen[cmd]
        if cmd.startswith("make") and not cmd.startswith("make -C "):
            self.skipped += 1
            print(f"  skip  {cmd}  (a make target that make test runs, or needs a GPU)")
            return None
        if PLACEHOLDER.search(cmd):
            self.skipped += 1
            print(f"  skip  {cmd}  (a synopsis: it has placeholders)")
            return None
        if not cmd.startswith(RUNNABLE):
            self.result(False, cmd, "not a command this test knows how to run: give it a "
                        "placeholder if it is a synopsis, or teach tests/readme.py")
            self.seen[cmd] = None
            return None
        try:
            p = subprocess.run(["sh", "-c", cmd], cwd=self.work, env=self.env,
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                               timeout=TIMEOUT)
            out, rc = p.stdout.decode("utf-8", "replace"), p.returncode
        except subprocess.TimeoutExpired as e:
            out, rc = (e.stdout or b"").decode("utf-8", "replace"), f"timeout {TIMEOUT}s"
        self.result(rc == 0, cmd, f"exit {rc}:\n{out}")
        self.seen[cmd] = out if rc == 0 else None
        return self.seen[cmd]

    def python(self, lines):
        path = os.path.join(self.work, "example.py")
        with open(path, "w") as f:
            f.write("\n".join(lines) + "\n")
        first = lines[0]
        py = os.path.join(self.work, ".venv", "bin", "python")
        p = subprocess.run([py, path], cwd=self.work, env=self.env, stdout=subprocess.PIPE,
                           stderr=subprocess.STDOUT, timeout=TIMEOUT)
        self.result(p.returncode == 0, f"python example ({first} ...)",
                    f"exit {p.returncode}:\n" + p.stdout.decode("utf-8", "replace"))

    def transcript(self, lines):
        i = 0
        while i < len(lines):
            cmd = lines[i][2:]
            i += 1
            printed = []
            while i < len(lines) and not lines[i].startswith("$ "):
                printed.append(lines[i])
                i += 1
            m = re.fullmatch(r"cat (\S+)", cmd.strip())
            if m:
                with open(os.path.join(self.work, m.group(1)), "w") as f:
                    f.write("\n".join(printed) + "\n")
                continue
            out = self.run(commands([cmd])[0])
            if out is None:
                continue
            missing = [p for p in printed if p.strip() and not shows(p, out)]
            self.result(not missing, f"  what `{cmd[:60]}` prints",
                        "the README shows, but the command did not print:\n" +
                        "\n".join(missing) + "\n-- it printed:\n" + out)


def shows(expected, out):
    """Does out show the README's line expected (by label, or exactly)?"""
    e = expected.strip()
    if e.startswith("[") or e == "..." or expected[:1].isspace():
        return True   # progress, elided lines, a labelled line's continuation
    m = re.match(r"([^:]{1,40}): ", e)
    lines = [ln.strip() for ln in out.split("\n")]
    if m:
        return any(ln.startswith(m.group(1) + ":") for ln in lines)
    return e in lines


def main():
    with open(os.path.join(ROOT, "README.md")) as f:
        readme = f.read()
    tmp = tempfile.mkdtemp(prefix="mt-readme-")
    try:
        work = os.path.join(tmp, "repo")
        os.makedirs(work)
        for name in ("bin", "lib", "python", ".venv"):
            os.symlink(os.path.join(ROOT, name), os.path.join(work, name))
        shared = os.path.realpath(os.path.join(ROOT, "..", "shared"))
        if not os.path.isdir(shared):
            shared = os.path.join(ROOT, "shared")
        os.symlink(shared, os.path.join(tmp, "shared"))
        home = os.path.join(tmp, "home")
        os.makedirs(home, mode=0o700)
        env = dict(os.environ)
        for k in ("MTATUNE_DB", "MTATUNE_LIB", "MTATUNE_DEVICE"):
            env.pop(k, None)
        env["HOME"] = home
        env.setdefault("MTATUNE_CACHE", os.path.join(ROOT, "build", "kcache"))
        r = Runner(work, env)
        for b in blocks(readme):          # files first: the text shows a program after its build
            if b[0].startswith("/* ") and ":" in b[0]:
                name = b[0][3:].split(":")[0]
                with open(os.path.join(work, name), "w") as f:
                    f.write("\n".join(b) + "\n")
        for b in blocks(readme):
            if b[0].startswith("usage: mtatune") or b[0].startswith("/* "):
                continue                  # --help text: tests/test_cli_help.c checks it
            if b[0].startswith(("import ", "from ")):
                r.python(b)
            elif any(line.startswith("$ ") for line in b):
                r.transcript(b)
            else:
                for cmd in commands(b):
                    r.run(cmd)
        print(f"readme: {r.skipped} lines skipped (synopses, make targets)")
        print(f"[readme]: {r.ok} ok, {r.failed} failing")
        return 1 if r.failed else 0
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
