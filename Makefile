# mtatune: one Makefile, no configure step.
#
#   make            bin/mtatune, lib/libmtatune.a, lib/libmtatune.so
#   make test       build with -Werror, run the suite, then again under
#                   AddressSanitizer + UndefinedBehaviorSanitizer
#   make bench      CPU benchmark (tuned C kernel vs reference vs PyTorch)
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
# Files embedded into the library as C strings (schema, templates, ...).
EMBED    := $(wildcard db/*.sql templates/*.h templates/*.c templates/*.cu)

B ?= build/normal

LIB_OBJ  := $(LIB_SRC:%.c=$(B)/%.o) $(B)/embed.o
CLI_OBJ  := $(CLI_SRC:%.c=$(B)/%.o)
TEST_OBJ := $(TEST_SRC:%.c=$(B)/%.o)

DEB_PKGS := libsqlite3-dev python3 valgrind clang-14 libclang-rt-14-dev

.PHONY: all deps test test-build san-build bench clean fuzz gpu-check gpu-bench
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
	$(MAKE) --no-print-directory B=build/normal $(if $(wildcard tuner/main.c),build/normal/mtatune) build/normal/test_runner
san-build: deps
	$(MAKE) --no-print-directory B=build/san OPT=-O1 SAN="$(SAN_FLAGS)" \
	  $(if $(wildcard tuner/main.c),build/san/mtatune) build/san/test_runner

test: all test-build san-build
	@sh tests/run.sh

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

clean:
	rm -rf build bin lib
