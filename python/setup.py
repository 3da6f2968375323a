"""setup.py: the one thing pyproject.toml cannot say: the package carries a
copy of the C library, lib/libmtatune.so, taken at install time from
$MTATUNE_LIB, else from the repository this folder belongs to (../lib/).
Installing fails, saying so, when there is none: build it first (`make`).
The wheel is therefore platform-specific (has_ext_modules)."""
import os
import shutil

from setuptools import setup
from setuptools.command.build_py import build_py
from setuptools.dist import Distribution

HERE = os.path.dirname(os.path.abspath(__file__))


def find_library():
    env = os.environ.get("MTATUNE_LIB")
    path = env or os.path.join(HERE, "..", "lib", "libmtatune.so")
    if not os.path.isfile(path):
        raise SystemExit(f"mtatune: {'$MTATUNE_LIB names' if env else 'no'} {path}"
                         f"{' (not a file)' if env else ''}: build the library first "
                         "(`make` in the repository), or set MTATUNE_LIB to a libmtatune.so")
    return path


class BuildPy(build_py):
    def run(self):
        super().run()
        dst = os.path.join(self.build_lib, "mtatune", "lib")
        os.makedirs(dst, exist_ok=True)
        shutil.copyfile(find_library(), os.path.join(dst, "libmtatune.so"))


class BinaryDistribution(Distribution):
    def has_ext_modules(self):
        return True


setup(cmdclass={"build_py": BuildPy}, distclass=BinaryDistribution)
