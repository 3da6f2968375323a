#!/usr/bin/env python3
"""run.py [NAME...]: the Python tests of the mtatune package (pytest not
needed). Runs every test of python/tests/test_*.py, or those whose name
contains one of the arguments, in this process, and prints one line per
test, then "[python]: N ok, N failing" (the line tests/run.sh adds to the
suite's total) and a closing "N passed, N failed". Skipped tests (e.g. the
golden cases where ../shared/golden is absent) are listed and counted in
neither. Exit status 1 if any test failed or none ran.

Run it with the interpreter of the venv `make python` made:
    .venv/bin/python python/tests/run.py
It imports the installed package (mtatune); with MTATUNE_TEST_SOURCE=1 the
package's source folder (python/) is imported instead.

Environment: MT_SEED repeats a run's random inputs (printed first);
MTA_GOLDEN names the golden cases' folder; kernels are cached in
$MTATUNE_CACHE (default build/kcache, shared with the C tests), torch.compile's
in $TORCHINDUCTOR_CACHE_DIR (default build/torchinductor); the database is an
empty private one, so every problem runs its default variant.
"""
import importlib
import os
import sys
import tempfile
import time
import traceback

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.normpath(os.path.join(HERE, "..", ".."))


def main(argv):
    os.environ.setdefault("MT_SEED", str(time.time_ns() % (2 ** 62) ^ os.getpid()))
    os.environ.setdefault("MTATUNE_CACHE", os.path.join(REPO, "build", "kcache"))
    os.environ.setdefault("TORCHINDUCTOR_CACHE_DIR", os.path.join(REPO, "build", "torchinductor"))
    tmp = tempfile.TemporaryDirectory(prefix="mt-python-")
    os.environ["MTATUNE_DB"] = os.path.join(tmp.name, "none.db")
    os.environ["MT_TMP"] = tmp.name
    os.makedirs(os.environ["MTATUNE_CACHE"], mode=0o700, exist_ok=True)
    if os.environ.get("MTATUNE_TEST_SOURCE"):
        sys.path.insert(0, os.path.join(REPO, "python"))
    sys.path.insert(0, HERE)
    label = os.environ.get("MT_LABEL", "[python]")
    print(f"python tests: seed {os.environ['MT_SEED']} (MT_SEED=N repeats it)", flush=True)

    passed = failed = skipped = 0
    try:
        import torch
        import mtatune
        from util import TESTS
        for name in sorted(f[:-3] for f in os.listdir(HERE)
                           if f.startswith("test_") and f.endswith(".py")):
            importlib.import_module(name)
        print(f"python tests: torch {torch.__version__}, mtatune from "
              f"{os.path.dirname(mtatune.__file__)}, library {mtatune.loaded_path()}",
              flush=True)
    except Exception:
        traceback.print_exc()
        print("python tests: could not start (is the venv made? `make python`)")
        print(f"{label}: 0 ok, 1 failing")
        print("0 passed, 1 failed")
        return 1

    from util import Skip
    for name, fn in TESTS:
        if len(argv) > 1 and not any(a in name for a in argv[1:]):
            continue
        t0 = time.monotonic()
        try:
            fn()
        except Skip as e:
            skipped += 1
            print(f"  skip  {name:<48} {e} (not counted as passed)", flush=True)
            continue
        except Exception as e:
            failed += 1
            dt = time.monotonic() - t0
            print(f"  FAIL  {name:<48} {dt:7.2f}s", flush=True)
            tb = traceback.format_exc().rstrip().splitlines()
            for line in tb[-12:]:
                print("    " + line)
            print(f"    (seed {os.environ['MT_SEED']})", flush=True)
            continue
        passed += 1
        print(f"  ok    {name:<48} {time.monotonic() - t0:7.2f}s", flush=True)
    tmp.cleanup()
    if skipped:
        print(f"python tests: {skipped} skipped (neither passed nor failed)")
    if passed + failed == 0:
        print("python tests: no test ran")
        failed = 1
    print(f"{label}: {passed} ok, {failed} failing")
    print(f"{passed} passed, {failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
