# mtatune: one Makefile, no configure step.
#
#   make            bin/mtatune, lib/libmtatune.a, lib/libmtatune.so
#   make test       build with -Werror, run the suite, then again under
#                   AddressSanitizer + UndefinedBehaviorSanitizer
#   make fuzz       run every libFuzzer target (tests/fuzz/) FUZZ_SECONDS each
#   make valgrind   the CLI and a runtime program under valgrind memcheck
#   make bench      CPU benchmark (tuned C kernel vs reference vs PyTorch)
#   make gpu-check  on a GPU machine: CUDA kernels vs the reference, sanitizers,
#                   one tuning run; writes docs/gpu/gpu-check-<date>.txt
#   make gpu-bench  GPU benchmark (tuned CUDA kernel vs PyTorch eager, compile, SDPA)
#   make deps       install missing Debian packages (run as root)
#
# Sources are found by folder: every .c in gen/ runtime/ db/ tuner/ goes into
# the library except the command line (tuner/main.c, tuner/cmd_*.c); every
# tests/*.c goes into the test runner.

CC      ?= cc
OPT     ?= -O2
SAN     ?=
CFLAGS  += -std=gnu11 $(OPT) $(SAN) -g -fPIC -pthread -Wall -Wextra -Werror \
           -Wno-unused-parameter -Iruntime -Igen -Idb -Ituner -Itemplates
LDFLAGS += $(SAN)
LDLIBS  += -lsqlite3 -ldl -lm -lpthread

SAN_FLAGS = -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined

CLI_SRC  := tuner/main.c $(wildcard tuner/cmd_*.c)
LIB_SRC  := $(filter-out $(CLI_SRC),$(wildcard gen/*.c runtime/*.c db/*.c tuner/*.c))
TEST_SRC := $(wildcard tests/*.c)
# Files embedded into the library as C strings (schema, templates, ...), and
# the runtime sources `mtatune export` copies into an exported library.
SHIP     := runtime/mta.h runtime/error.h runtime/kargs.h runtime/error.c runtime/dtype.c \
            runtime/tensor.c runtime/reference.c runtime/kargs.c gen/problem.c \
            gen/variant.h gen/cudagen.h runtime/cuda_args.c
EMBED    := $(wildcard db/*.sql templates/*.h templates/*.c templates/*.cu) $(SHIP)

B ?= build/normal

LIB_OBJ  := $(LIB_SRC:%.c=$(B)/%.o) $(B)/embed.o
CLI_OBJ  := $(CLI_SRC:%.c=$(B)/%.o)
TEST_OBJ := $(TEST_SRC:%.c=$(B)/%.o)

DEB_PKGS := libsqlite3-dev python3 valgrind clang-14 libclang-rt-14-dev

.PHONY: all deps test test-build san-build fuzz-build bench clean fuzz valgrind gpu-check gpu-bench
all: deps $(if $(wildcard tuner/main.c),bin/mtatune) lib/libmtatune.a lib/libmtatune.so

# Install what is missing, once; does nothing when everything is present.
deps:
	@missing=""; for p in $(DEB_PKGS); do \
	  dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
	  echo "installing:$$missing"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null; \
	fi

$(B)/%.o: %.c $(wildcard runtime/*.h gen/*.h db/*.h tuner/*.h templates/*.h tests/*.h)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -c $< -o $@

# embed.c: every file in EMBED as a NUL-terminated string, found by path.
$(B)/embed.c: $(EMBED) gen/embed.sh
	@mkdir -p $(B)
	sh gen/embed.sh $(EMBED) > $@
$(B)/embed.o: $(B)/embed.c
	$(CC) $(CFLAGS) -c $< -o $@

$(B)/libmtatune.a: $(LIB_OBJ)
	@rm -f $@
	ar rcs $@ $^
$(B)/mtatune: $(CLI_OBJ) $(B)/libmtatune.a
	$(CC) $(CFLAGS) $(LDFLAGS) -o $@ $(CLI_OBJ) $(B)/libmtatune.a $(LDLIBS) -rdynamic
$(B)/test_runner: $(TEST_OBJ) $(B)/libmtatune.a
	$(CC) $(CFLAGS) $(LDFLAGS) -o $@ $(TEST_OBJ) $(B)/libmtatune.a $(LDLIBS) -rdynamic

bin/mtatune: $(B)/mtatune
	@mkdir -p bin
	cp $< $@
lib/libmtatune.a: $(B)/libmtatune.a
	@mkdir -p lib
	cp $< $@
lib/libmtatune.so: $(LIB_OBJ)
	@mkdir -p lib
	$(CC) $(CFLAGS) -shared -o $@ $(LIB_OBJ) $(LDLIBS)

test-build: deps
	$(MAKE) --no-print-directory B=build/normal $(if $(wildcard tuner/main.c),build/normal/mtatune) \
	  build/normal/test_runner build/normal/vg_runtime
san-build: deps
	$(MAKE) --no-print-directory B=build/san OPT=-O1 SAN="$(SAN_FLAGS)" \
	  $(if $(wildcard tuner/main.c),build/san/mtatune) build/san/test_runner

test: all test-build san-build fuzz-build
	@sh tests/run.sh

# libFuzzer targets: tests/fuzz/fuzz_NAME.c, seeds in tests/fuzz/corpus/NAME/,
# crash reproducers (kept as regression inputs) in tests/fuzz/crashes/NAME/.
# The library is built with clang for them, in build/fuzz; tuner/main.c is
# compiled with its main() renamed so the CLI target can call it.
FUZZ_CC      ?= clang-14
FUZZ_SECONDS ?= 60
FUZZ_NAMES   := $(patsubst tests/fuzz/fuzz_%.c,%,$(wildcard tests/fuzz/fuzz_*.c))
FUZZ_SAN      = -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined
fuzz-build: deps
	$(MAKE) --no-print-directory B=build/fuzz CC=$(FUZZ_CC) OPT=-O1 \
	  SAN="$(FUZZ_SAN) -fsanitize=fuzzer-no-link" $(FUZZ_NAMES:%=build/fuzz/fuzz_%)
$(B)/tuner/main-as-lib.o: tuner/main.c tuner/cli.h
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -Dmain=mtatune_main -c $< -o $@
$(B)/fuzz_%: tests/fuzz/fuzz_%.c $(B)/libmtatune.a $(B)/tuner/main-as-lib.o \
	    $(filter-out $(B)/tuner/main.o,$(CLI_OBJ))
	$(CC) $(CFLAGS) -fsanitize=fuzzer -o $@ $< $(B)/tuner/main-as-lib.o \
	  $(filter-out $(B)/tuner/main.o,$(CLI_OBJ)) $(B)/libmtatune.a $(LDLIBS)
fuzz: fuzz-build
	@sh tests/fuzz/run.sh long $(FUZZ_SECONDS)

valgrind: test-build
	@sh tests/valgrind.sh
$(B)/vg_runtime: tests/valgrind/vg_runtime.c $(B)/libmtatune.a
	$(CC) $(CFLAGS) $(LDFLAGS) -o $@ $< $(B)/libmtatune.a $(LDLIBS)

# The PyTorch peer needs Debian's python3-torch and python3-numpy.
BENCH_PKGS := python3-torch python3-numpy
bench: all
	@missing=""; for p in $(BENCH_PKGS); do \
	  dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
	  echo "installing:$$missing"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null; \
	fi
	$(MAKE) --no-print-directory B=build/normal build/normal/cpu_bench
	MTATUNE_CACHE=build/kcache build/normal/cpu_bench $(BENCH_ARGS)

$(B)/cpu_bench $(B)/kbench: $(B)/%: $(B)/bench/%.o $(B)/libmtatune.a
	$(CC) $(CFLAGS) $(LDFLAGS) -o $@ $< $(B)/libmtatune.a $(LDLIBS)

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
