# mtatune: one Makefile, no configure step.
#
#   make            bin/mtatune, lib/libmtatune.a, lib/libmtatune.so
#   make test       build with -Werror, run the suite, then again under
#                   AddressSanitizer + UndefinedBehaviorSanitizer
#   make fuzz       run every libFuzzer target (tests/fuzz/) FUZZ_SECONDS each
#   make valgrind   the CLI and a runtime program under valgrind memcheck
#   make bench      CPU benchmark (tuned C kernel vs SDPA, PyTorch eager and
#                   torch.compile, and the FMA peak; docs/bench-cpu.md)
#   make gpu-check  on a GPU machine: CUDA kernels vs the reference, sanitizers,
#                   one tuning run; writes docs/gpu/gpu-check-<date>.txt
#   make gpu-bench  GPU benchmark (tuned CUDA kernel vs PyTorch eager, compile, SDPA)
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
            runtime/cuda/module.c templates/export_runtime.c templates/export_table.h
# Files embedded into the library as C strings: schema, templates, and SHIP.
EMBED    := $(wildcard db/*.sql) $(filter-out $(SHIP),$(wildcard templates/*))

B ?= build/normal

LIB_OBJ  := $(LIB_SRC:%.c=$(B)/%.o) $(B)/embed.o
TOOL_OBJ := $(TOOL_SRC:%.c=$(B)/%.o)
CLI_OBJ  := $(CLI_SRC:%.c=$(B)/%.o)
TEST_OBJ := $(TEST_SRC:%.c=$(B)/%.o)

DEB_PKGS := libsqlite3-dev python3 valgrind clang-14 libclang-rt-14-dev

.PHONY: all deps test test-build san-build fuzz-build bench clean fuzz valgrind gpu-check gpu-bench
all: deps bin/mtatune lib/libmtatune.a lib/libmtatune.so

# Install what is missing, once; does nothing when everything is present.
deps:
	@missing=""; for p in $(DEB_PKGS); do \
	  dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
	  echo "installing:$$missing"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null; \
	fi

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

test-build: deps
	$(MAKE) --no-print-directory B=build/normal build/normal/mtatune \
	  build/normal/test_runner build/normal/vg_runtime
san-build: deps
	$(MAKE) --no-print-directory B=build/san OPT=-O1 SAN="$(SAN_FLAGS)" \
	  build/san/mtatune build/san/test_runner

test: all test-build san-build fuzz-build
	@sh tests/run.sh

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
	@if [ ! -x .venv/bin/python ] && [ "$(BENCH_VENV)" = 1 ]; then \
	  echo "creating .venv with PyTorch for the peers (python3 -m venv .venv && .venv/bin/pip install torch numpy)"; \
	  { python3 -m venv .venv && .venv/bin/pip install -q torch numpy; } || \
	  { echo "could not install PyTorch into .venv: the benchmark runs without its peers"; rm -rf .venv; }; \
	fi
	$(MAKE) --no-print-directory B=build/normal build/normal/cpu_bench
	MTATUNE_CACHE=build/kcache build/normal/cpu_bench $(BENCH_ARGS)

$(B)/cpu_bench $(B)/kbench: $(B)/%: $(B)/bench/%.o $(TOOL_LIBS)
	$(CC) $(CFLAGS) $(LDFLAGS) -o $@ $< $(TOOL_LIBS) $(LDLIBS)

# On a machine with a GPU: every CUDA variant against the reference on the GPU,
# compute-sanitizer, one tuning run; the report lands in docs/gpu/ (commit it).
gpu-check:
	@sh bench/gpu_check.sh

# GPU benchmark against PyTorch eager, torch.compile and SDPA (needs a GPU
# machine with PyTorch; fails fast without one). Report: docs/gpu/bench-<date>.md
gpu-bench:
	@command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1 || \
	  { echo "make gpu-bench needs a GPU (nvidia-smi finds none on this machine)"; exit 2; }
	$(MAKE) --no-print-directory all
	python3 bench/gpu_bench.py $(BENCH_ARGS)

clean:
	rm -rf build bin lib
