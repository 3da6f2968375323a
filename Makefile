# mtatune: one Makefile, no configure step.
#
#   make            bin/mtatune, lib/libmtatune.a, lib/libmtatune.so
#   make test       build with -Werror, run the suite, then again under
#                   AddressSanitizer + UndefinedBehaviorSanitizer
#   make fuzz       run every libFuzzer target (tests/fuzz/) FUZZ_SECONDS each
#   make valgrind   the CLI and a runtime program under valgrind memcheck
#   make python     .venv/ with PyTorch and the mtatune Python package (python/)
#   make bench      CPU benchmark (tuned C kernel vs SDPA, PyTorch eager and
#                   torch.compile, and the FMA peak; docs/bench-cpu.md)
#   make bench-tuner  five fresh tunes, each winner re-measured apart (docs/bench-tuner.md)
#   make gpu-pack   build/gpu: what the prepared GPU run carries (docs/gpu/README.md)
#   make gpu-rehearse  that run here, the CPU emulator standing in for the GPU
#   make gpu-check  on a GPU machine: the prepared run (bench/gpu_run.sh), results
#                   under $OUT (default build/gpu-out)
#   make gpu-bench  GPU benchmark (tuned CUDA kernel vs PyTorch eager, compile, SDPA)
#   make test-slurm start a one-node Slurm cluster in a temporary folder, run
#                   docs/slurm.md's array and merge jobs on it, check the
#                   results (make test runs it too; installs slurm-wlm, munge)
#   make deps       install missing Debian packages (run as root)
#
# Layers are folders (docs/architecture.md). What goes where:
#   libmtatune      the runtime users link: runtime/ (core, backends, contexts),
#                   gen/ (kernels are generated at run time) and db/; built with
#                   -fvisibility=hidden, it exports exactly runtime/mta.h
#   libmtatool      the tool: tuner/ except the command line (tuning, measuring,
#                   sweeps, export, report, .npy inputs) and the database's writers
#   bin/mtatune     tuner/cli/ linked with both
# Includes name their folder (#include "runtime/core/error.h"); -I. is the
# only include path.

CC      ?= cc
OPT     ?= -O2
SAN     ?=
CFLAGS  += -std=gnu11 $(OPT) $(SAN) -g -fPIC -pthread -fvisibility=hidden \
           -Wall -Wextra -Werror -Wno-unused-parameter -I.
LDFLAGS += $(SAN)
LDLIBS  += -lsqlite3 -ldl -lm -lpthread

SAN_FLAGS = -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined

# The database's writers (db_write.c, db_merge.c) belong to the tool: the
# runtime only reads winners and binaries.
DB_WRITE := db/db_write.c db/db_merge.c
LIB_SRC  := $(filter-out $(DB_WRITE),$(wildcard runtime/*.c runtime/*/*.c gen/*.c gen/*/*.c db/*.c))
TOOL_SRC := $(filter-out tuner/cli/%,$(wildcard tuner/*/*.c)) $(DB_WRITE)
CLI_SRC  := $(wildcard tuner/cli/*.c)
TEST_SRC := $(wildcard tests/*.c)
HDRS     := $(wildcard runtime/*.h runtime/*/*.h gen/*.h gen/*/*.h db/*.h tuner/*/*.h \
                       templates/*.h tests/*.h)
# The runtime files `mtatune export` copies into a library, its one list
# (embedded, and named in mta_shipped[] by gen/embed.sh). Everything under
# runtime/core/ uses nothing but libc, libm and pthreads, so it all ships.
SHIP     := runtime/mta.h $(sort $(wildcard runtime/core/*.h runtime/core/*.c)) \
            runtime/cuda/driver.h runtime/cuda/driver.c runtime/cuda/module.h \
            runtime/cuda/module.c runtime/cuda/bwd.h runtime/cuda/bwd.c runtime/cuda/bwd_drv.c \
            runtime/cuda/decode_dev.h runtime/cuda/decode_dev.c \
            templates/export_runtime.c templates/export_table.h
# Files embedded into the library as C strings: schema, templates, and SHIP.
EMBED    := $(wildcard db/*.sql) $(filter-out $(SHIP),$(wildcard templates/*))

B ?= build/normal

LIB_OBJ  := $(LIB_SRC:%.c=$(B)/%.o) $(B)/embed.o
TOOL_OBJ := $(TOOL_SRC:%.c=$(B)/%.o)
CLI_OBJ  := $(CLI_SRC:%.c=$(B)/%.o)
TEST_OBJ := $(TEST_SRC:%.c=$(B)/%.o)

DEB_PKGS := libsqlite3-dev python3 valgrind clang-14 libclang-rt-14-dev

.PHONY: all deps slurm-deps test test-slurm test-build san-build fuzz-build bench bench-tuner \
        clean fuzz valgrind gpu-check gpu-bench python test-python nvdisasm gpu-pack gpu-rehearse
all: deps bin/mtatune lib/libmtatune.a lib/libmtatune.so

# $(call apt_install,PACKAGES): shell commands that install those of the
# Debian PACKAGES that are missing; they do nothing when all are present.
apt_install = missing=""; for p in $(1); do \
	  dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
	  echo "installing:$$missing"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null; \
	fi

# Install what is missing, once; does nothing when everything is present.
deps:
	@$(call apt_install,$(DEB_PKGS))

$(B)/%.o: %.c $(HDRS)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -c $< -o $@

# embed.c: every file in EMBED and SHIP as a NUL-terminated string, found by path.
$(B)/embed.c: $(EMBED) $(SHIP) gen/embed.sh
	@mkdir -p $(B)
	sh gen/embed.sh $(EMBED) --ship $(SHIP) > $@
$(B)/embed.o: $(B)/embed.c
	$(CC) $(CFLAGS) -c $< -o $@

$(B)/libmtatune.a: $(LIB_OBJ)
	@rm -f $@
	ar rcs $@ $^
$(B)/libmtatool.a: $(TOOL_OBJ)
	@rm -f $@
	ar rcs $@ $^
TOOL_LIBS = $(B)/libmtatool.a $(B)/libmtatune.a
$(B)/mtatune: $(CLI_OBJ) $(TOOL_LIBS)
	$(CC) $(CFLAGS) $(LDFLAGS) -o $@ $(CLI_OBJ) $(TOOL_LIBS) $(LDLIBS) -rdynamic
$(B)/test_runner: $(TEST_OBJ) $(TOOL_LIBS)
	$(CC) $(CFLAGS) $(LDFLAGS) -o $@ $(TEST_OBJ) $(TOOL_LIBS) $(LDLIBS) -rdynamic

bin/mtatune: $(B)/mtatune
	@mkdir -p bin
	cp $< $@
lib/libmtatune.a: $(B)/libmtatune.a
	@mkdir -p lib
	cp $< $@
lib/libmtatune.so: $(LIB_OBJ)
	@mkdir -p lib
	$(CC) $(CFLAGS) -shared -Wl,--no-undefined -o $@ $(LIB_OBJ) $(LDLIBS)

# The benchmarks are built too (not run), so that an API change cannot leave them behind.
test-build: deps
	$(MAKE) --no-print-directory B=build/normal build/normal/mtatune \
	  build/normal/test_runner build/normal/vg_runtime build/normal/cpu_bench \
	  build/normal/kbench build/normal/kprof build/normal/tune_repeat
san-build: deps
	$(MAKE) --no-print-directory B=build/san OPT=-O1 SAN="$(SAN_FLAGS)" \
	  build/san/mtatune build/san/test_runner

# make test builds on every core (TEST_JOBS, default one job per CPU; a -j
# given to make itself wins): after a header changes, the normal, sanitizer
# and fuzz builds are some 200 compiles, minutes on one core. The normal
# build first (all and test-build share its objects: never two makes on one
# folder), then test-build, san-build and fuzz-build side by side (folders
# of their own), then the rest as before.
TEST_JOBS ?= $(shell nproc 2>/dev/null || echo 1)
TEST_PAR   = $(if $(filter -j% --jobserver%,$(MAKEFLAGS)),,-j$(TEST_JOBS))
test: deps
	@$(MAKE) --no-print-directory $(TEST_PAR) all
	@$(MAKE) --no-print-directory $(TEST_PAR) test-build san-build fuzz-build
	@$(MAKE) --no-print-directory slurm-deps python nvdisasm gpu-pack
	@sh tests/run.sh

# The cluster test (tests/slurm/run.sh): Debian's Slurm and munge, installed
# when missing. Only root can install them; for anyone else, with them
# missing, make test says the cluster test did not run (make test-slurm fails).
SLURM_PKGS := slurm-wlm munge
slurm-deps:
	@if [ "$$(id -u)" -ne 0 ]; then \
	  for p in $(SLURM_PKGS); do dpkg -s $$p >/dev/null 2>&1 || \
	    { echo "not root: cannot install $$p, so the Slurm test will not run"; break; }; done; \
	else $(call apt_install,$(SLURM_PKGS)); fi
test-slurm: all slurm-deps
	@sh tests/slurm/run.sh

# The Python package (python/, pure Python + ctypes) in a venv at the root,
# .venv/, with PyTorch 2.x from PyPI (about 5 GB; installed only when no
# PyTorch with torch.library.custom_op is importable there: the venv also sees
# the system's packages, so a machine that has PyTorch and no network, like the
# GPU machines, uses its own). pip installs the package with a copy of
# lib/libmtatune.so inside (python/setup.py), every time, so the copy is never
# stale. Without network on a machine lacking PyTorch this fails, and so does
# `make test`: the Python tests are part of the suite, never skipped.
VENV := .venv
VPY  := $(VENV)/bin/python
python: deps lib/libmtatune.so
	@python3 -c 'import venv, ensurepip' 2>/dev/null || { echo "installing: python3-venv"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-venv >/dev/null; }
	@[ -x $(VPY) ] || { echo "python3 -m venv --system-site-packages $(VENV)"; \
	  python3 -m venv --system-site-packages $(VENV); }
	@$(VPY) -c 'import torch.library; torch.library.custom_op' 2>/dev/null || { \
	  echo "installing PyTorch from PyPI into $(VENV) (about 5 GB, a few minutes)"; \
	  $(VPY) -m pip install -q 'torch>=2.4'; }
	@$(VPY) -c 'import numpy' 2>/dev/null || $(VPY) -m pip install -q numpy
	@# Without network pip cannot fetch setuptools for an isolated build: use the
	@# venv's when it builds wheels by itself (70.1 or later, or with wheel).
	@iso=; $(VPY) -c 'import setuptools as s, importlib.util as u, sys; \
	  v = tuple(int(x) for x in s.__version__.split(".")[:2]); \
	  sys.exit(not (v >= (70, 1) or u.find_spec("wheel")))' 2>/dev/null && iso=--no-build-isolation; \
	  echo "$(VPY) -m pip install $$iso ./python"; \
	  $(VPY) -m pip install -q $$iso ./python

# The Python tests alone (make test runs them too, see tests/run.sh).
test-python: python
	@$(VPY) python/tests/run.py

# nvdisasm for the cost model (`mtatune model`, tests/test_model.c): from
# PyPI into the project's .venv/ (made by `make python`), once, where mtatune
# looks for it.
NVDISASM_STAMP := .venv/.nvdisasm
nvdisasm: $(NVDISASM_STAMP)
$(NVDISASM_STAMP): | python
	@ls .venv/lib/python3*/site-packages/nvidia/cu*/bin/nvdisasm >/dev/null 2>&1 || \
	  { echo "installing nvidia-cuda-nvdisasm into .venv/"; \
	    $(VPY) -m pip install -q nvidia-cuda-nvdisasm; }
	@touch $@

# libFuzzer targets: tests/fuzz/fuzz_NAME.c, seeds in tests/fuzz/corpus/NAME/,
# crash reproducers (kept as regression inputs) in tests/fuzz/crashes/NAME/.
# The libraries are built with clang for them, in build/fuzz; tuner/cli/main.c
# is compiled with its main() renamed so the CLI target can call it.
FUZZ_CC      ?= clang-14
FUZZ_SECONDS ?= 60
FUZZ_NAMES   := $(patsubst tests/fuzz/fuzz_%.c,%,$(wildcard tests/fuzz/fuzz_*.c))
FUZZ_SAN      = -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined
fuzz-build: deps
	$(MAKE) --no-print-directory B=build/fuzz CC=$(FUZZ_CC) OPT=-O1 \
	  SAN="$(FUZZ_SAN) -fsanitize=fuzzer-no-link" $(FUZZ_NAMES:%=build/fuzz/fuzz_%)
$(B)/tuner/cli/main-as-lib.o: tuner/cli/main.c $(HDRS)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -Dmain=mtatune_main -c $< -o $@
FUZZ_CLI_OBJ = $(B)/tuner/cli/main-as-lib.o $(filter-out $(B)/tuner/cli/main.o,$(CLI_OBJ))
$(B)/fuzz_%: tests/fuzz/fuzz_%.c $(TOOL_LIBS) $(FUZZ_CLI_OBJ)
	$(CC) $(CFLAGS) -fsanitize=fuzzer -o $@ $< $(FUZZ_CLI_OBJ) $(TOOL_LIBS) $(LDLIBS)
fuzz: fuzz-build
	@sh tests/fuzz/run.sh long $(FUZZ_SECONDS)

valgrind: test-build
	@sh tests/valgrind.sh
$(B)/vg_runtime: tests/valgrind/vg_runtime.c $(TOOL_LIBS)
	$(CC) $(CFLAGS) $(LDFLAGS) -o $@ $< $(TOOL_LIBS) $(LDLIBS)

# The PyTorch peers (SDPA, eager, torch.compile) run PyTorch 2.x from the
# project's .venv; `make bench` creates it when absent (about 70 s and 5 GB
# from PyPI; BENCH_VENV=0 skips that) and runs without peers, saying so, when
# it cannot. BENCH_ARGS go to build/normal/cpu_bench (--help: its options).
BENCH_VENV ?= 1
bench: all
	@if [ "$(BENCH_VENV)" = 1 ]; then $(MAKE) --no-print-directory python || \
	  echo "could not make .venv with PyTorch: the benchmark runs without its peers"; fi
	$(MAKE) --no-print-directory B=build/normal build/normal/cpu_bench
	MTATUNE_CACHE=build/kcache build/normal/cpu_bench $(BENCH_ARGS)

$(B)/cpu_bench $(B)/kbench $(B)/kprof $(B)/tune_repeat: $(B)/%: $(B)/bench/%.o $(TOOL_LIBS)
	$(CC) $(CFLAGS) $(LDFLAGS) -o $@ $< $(TOOL_LIBS) $(LDLIBS)

# Are the tuner's winners real? Five fresh tunes, each winner re-measured
# against the default apart from the tuner (docs/bench-tuner.md). Needs a
# quiet machine: nothing else running.
bench-tuner: all
	$(MAKE) --no-print-directory B=build/normal build/normal/tune_repeat
	MTATUNE_CACHE=build/kcache build/normal/tune_repeat --bin bin/mtatune $(BENCH_ARGS)

# The one prepared GPU run (bench/gpu_run.sh, docs/gpu/README.md). Here:
# `make gpu-pack` writes build/gpu (bin/mtatune with SQLite linked in, the
# golden cases, COMMIT): carry it to the GPU machine and run
# `sh bench/gpu_run.sh` there; nothing is built or installed on it.
# `make gpu-rehearse` runs the same script here with the CPU emulator
# standing in for the GPU (part of `make test`).
GOLDEN_SRC ?= $(firstword $(wildcard shared/golden ../shared/golden))
PACK := build/gpu
$(B)/mtatune-static: $(CLI_OBJ) $(TOOL_LIBS)
	$(CC) $(CFLAGS) $(LDFLAGS) -o $@ $(CLI_OBJ) $(TOOL_LIBS) \
	  -Wl,-Bstatic -lsqlite3 -Wl,-Bdynamic -ldl -lm -lpthread -rdynamic
gpu-pack: lib/libmtatune.so
	@test -n "$(GOLDEN_SRC)" || { echo "gpu-pack: no golden cases (shared/golden or ../shared/golden; set GOLDEN_SRC)"; exit 2; }
	$(MAKE) --no-print-directory B=build/normal build/normal/mtatune-static
	@rm -rf $(PACK) && mkdir -p $(PACK)/bin $(PACK)/lib
	cp build/normal/mtatune-static $(PACK)/bin/mtatune
	cp lib/libmtatune.so $(PACK)/lib/libmtatune.so
	cp -R $(GOLDEN_SRC) $(PACK)/golden && chmod -R u+w $(PACK)/golden
	@{ git rev-parse HEAD 2>/dev/null || echo unknown; } | tr -d '\n' > $(PACK)/COMMIT
	@git diff --quiet HEAD 2>/dev/null || printf ' (with uncommitted changes)' >> $(PACK)/COMMIT
	@echo "packed $(PACK): $$(du -sh $(PACK) | cut -f1), commit $$(cat $(PACK)/COMMIT)"
gpu-rehearse: gpu-pack nvdisasm
	@sh bench/gpu_rehearse.sh

# On a GPU machine with the pack in place: the prepared run, results in
# $(OUT) (default build/gpu-out; commit them under docs/gpu/).
gpu-check:
	@sh bench/gpu_run.sh

# The benchmark alone (a GPU machine with PyTorch; fails fast without one).
gpu-bench: bin/mtatune
	python3 bench/gpu_bench.py --mtatune bin/mtatune --json build/gpu-bench.json \
	  --md build/gpu-bench.md $(BENCH_ARGS)

clean:
	rm -rf build bin lib python/build python/mtatune.egg-info
