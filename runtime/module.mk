# runtime/module.mk: the shared runtime library (libruntime.a) and its tools.
RT_SRCS   := $(wildcard runtime/src/*.c)
RT_OBJS   := $(RT_SRCS:%.c=$(BUILD)/obj/%.o)
RT_LIB    := $(BUILD)/lib/libruntime.a
# libunwind where its header is (fatal.c falls back to glibc's backtrace() without it)
RT_HAVE_UNWIND := $(shell $(CC) -E -x c -include libunwind.h /dev/null >/dev/null 2>&1 && echo yes)
RT_LDLIBS := $(if $(RT_HAVE_UNWIND),-lunwind) -lpthread -lm -ldl

$(RT_LIB): $(RT_OBJS)
	@mkdir -p $(@D)
	$(call step,AR,$@)rm -f $@ && $(AR) rcs $@ $^

$(BUILD)/bin/rt-bench: $(BUILD)/obj/runtime/tools/rt-bench.o $(RT_LIB)
	@mkdir -p $(@D)
	$(call step,LD,$@)$(CC) $(CFLAGS) $(LDFLAGS) -o $@ $^ $(RT_LDLIBS)

ALL_TARGETS += $(RT_LIB) $(BUILD)/bin/rt-bench
BENCH_BINS  += $(BUILD)/bin/rt-bench
LINT_SRCS   += $(RT_SRCS) runtime/tools/rt-bench.c

# Unit tests under tests/unit/runtime link these.
runtime_TEST_DEPS   := $(RT_LIB)
runtime_TEST_LDLIBS := $(RT_LDLIBS)
