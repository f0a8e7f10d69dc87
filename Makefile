# Makefile: one non-recursive GNU Make build for the whole project; outputs under build/.
#
#   make            build every library, tool and test (build/lib, build/bin, build/tests)
#   make test       scripts/setup, then tests/run: unit, sanitizer, integration and lint
#                   suites; last line "N passed, N failed, N skipped"
#   make check      the unit tests under AddressSanitizer + UndefinedBehaviorSanitizer
#   make lint       clang-tidy, cppcheck and the clang-format check, all clean
#   make format     clang-format every C source in place
#   make fuzz       libFuzzer targets, each for FUZZ_SECONDS (default 30)
#   make bench      benchmarks: CSV + Markdown under build/bench/
#   make demo       scripts/setup, build, then each system's demo
#
# Knobs: BUILD (output dir), CC, SAN (e.g. address,undefined), WERROR (1: -Werror, default),
# OPT (default -O2), V (1: print every command; default: one short line per step).
# Each component adds itself in <component>/module.mk.

BUILD   ?= build
OPT     ?= -O2
WERROR  ?= 1
SAN     ?=
FUZZ_SECONDS ?= 30
V       ?= 0

# $(call step,WHAT,FILE) starts a recipe line: "  CC  minuet/src/conv.c" and the command
# silenced, or nothing and the whole command shown with V=1.
ifeq ($(V),1)
step =
else
step = @printf '  %-3s %s\n' '$(1)' '$(2)';
endif

CFLAGS_WARN := -Wall -Wextra -Wshadow -Wpointer-arith -Wstrict-prototypes -Wformat=2 \
               -Wno-format-nonliteral
ifeq ($(WERROR),1)
CFLAGS_WARN += -Werror
endif
CFLAGS_SAN :=
LDFLAGS_SAN :=
ifneq ($(SAN),)
CFLAGS_SAN := -fsanitize=$(SAN) -fno-omit-frame-pointer -fno-sanitize-recover=all
LDFLAGS_SAN := $(filter-out -fsanitize=fuzzer-no-link,-fsanitize=$(SAN))
endif

CPPFLAGS := -D_GNU_SOURCE -Iruntime/include
CFLAGS   := -std=gnu11 $(OPT) -g -fPIC -fvisibility=hidden $(CFLAGS_WARN) $(CFLAGS_SAN) -MMD -MP
LDFLAGS  := $(LDFLAGS_SAN)

# Filled in by the module.mk files.
ALL_TARGETS :=
UNIT_TESTS  :=
LINT_SRCS   :=
FUZZ_TARGETS :=
BENCH_BINS  :=

# The sanitizer and fuzz builds are this same Makefile with another BUILD, CC and SAN.
.SECONDARY:
.PHONY: lint-one all test check lint format format-check fuzz bench demo clean setup unit
all:

include runtime/module.mk
include shim-cuda/module.mk
include shim-posix/module.mk
include minuet/module.mk
include dynapipe/module.mk
include tests/module.mk

all: $(ALL_TARGETS) $(UNIT_TESTS)
unit: $(UNIT_TESTS)

$(BUILD)/obj/%.o: %.c
	@mkdir -p $(@D)
	$(call step,CC,$<)$(CC) $(CPPFLAGS) $(CFLAGS) -c $< -o $@

setup:
	@SETUP_QUIET=1 scripts/setup

test: setup
	tests/run

check: setup
	tests/run --only asan

lint: setup
	scripts/lint $(LINT_SRCS)

# One lint tool (LINT_TOOL=clang-tidy|cppcheck|clang-format), for tests/run.
lint-one:
	scripts/lint --tool $(LINT_TOOL) $(LINT_SRCS)

format:
	clang-format -i $(LINT_SRCS) $(shell find runtime shim-cuda shim-posix minuet dynapipe tests -name '*.h')

fuzz: setup
	$(MAKE) --no-print-directory BUILD=build/fuzz CC=clang SAN=fuzzer-no-link,address,undefined \
		OPT=-O1 WERROR=$(WERROR) fuzz-bins
	scripts/fuzz build/fuzz/fuzz $(FUZZ_SECONDS)

bench: setup all
	scripts/bench $(BUILD)

demo: setup all
	scripts/demo $(BUILD)

clean:
	rm -rf build

-include $(shell find $(BUILD)/obj -name '*.d' 2>/dev/null)
