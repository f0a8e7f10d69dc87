# runtime/module.mk: the shared runtime library (libruntime.a) and its tools.
RT_SRCS   := $(wildcard runtime/src/*.c)
RT_OBJS   := $(RT_SRCS:%.c=$(BUILD)/obj/%.o)
RT_LIB    := $(BUILD)/lib/libruntime.a
# rdma-core (libibverbs, librdmacm) is loaded with dlopen when the rdma transport is chosen,
# so programs and preloaded shims never need it installed to start.
RT_LDLIBS := -lunwind -lpthread -lm -ldl

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
runtime_TEST_DEPS   := $(BUILD)/obj/tests/fixtures/rdma_twin.o $(RT_LIB)
runtime_TEST_LDLIBS := $(RT_LDLIBS)

# ncl-server: the near-compute-log peer daemon (SplitFT). Its store and loop are also a
# library for the unit tests.
NCLS_SRCS := runtime/ncl-server/store.c runtime/ncl-server/server.c
NCLS_LIB  := $(BUILD)/lib/libnclserver.a
$(NCLS_LIB): $(NCLS_SRCS:%.c=$(BUILD)/obj/%.o)
	@mkdir -p $(@D)
	$(call step,AR,$@)rm -f $@ && $(AR) rcs $@ $^
$(BUILD)/bin/ncl-server: $(BUILD)/obj/runtime/ncl-server/main.o $(NCLS_LIB) $(RT_LIB)
	@mkdir -p $(@D)
	$(call step,LD,$@)$(CC) $(CFLAGS) $(LDFLAGS) -o $@ $^ $(RT_LDLIBS)
ALL_TARGETS += $(BUILD)/bin/ncl-server
LINT_SRCS   += $(NCLS_SRCS) runtime/ncl-server/main.c
ncl_TEST_DEPS   := $(NCLS_LIB) $(RT_LIB)
ncl_TEST_LDLIBS := $(RT_LDLIBS)
