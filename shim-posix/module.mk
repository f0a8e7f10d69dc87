# shim-posix/module.mk: SplitFT's client side: the POSIX shim libsplitft.so and the splitft
# command. The near-compute log they use is its own component, shim-posix/ncl (module.mk
# there), reached through its header ncl/client.h; the YCSB driver splitft-ycsb is built by
# shim-posix/ycsb/module.mk.
include shim-posix/ncl/module.mk
include shim-posix/ycsb/module.mk

$(BUILD)/obj/shim-posix/src/%.o $(BUILD)/obj/shim-posix/tools/%.o: CPPFLAGS += $(NCL_INC)

$(BUILD)/bin/splitft: $(BUILD)/obj/shim-posix/tools/splitft.o $(NCL_LIB) $(NCLW_LIB) $(RT_LIB)
	@mkdir -p $(@D)
	$(call step,LD,$@)$(CC) $(CFLAGS) $(LDFLAGS) -o $@ $^ $(RT_LDLIBS)

# The shim: wrappers (interpose.c) over the logic (core.h: files.c, sync.c, barriers.c,
# flusher.c, start.c, sharing state.h) and the real calls (sys.c); only the wrappers are
# exported (-fvisibility=hidden everywhere else).
SHIM_CORE_SRCS := shim-posix/src/files.c shim-posix/src/sync.c shim-posix/src/barriers.c \
                  shim-posix/src/flusher.c shim-posix/src/start.c shim-posix/src/sys.c
SHIM_SRCS := $(SHIM_CORE_SRCS) shim-posix/src/interpose.c
SHIM_LIB  := $(BUILD)/lib/libsplitft.so
$(SHIM_LIB): $(SHIM_SRCS:%.c=$(BUILD)/obj/%.o) $(NCL_LIB) $(NCLW_LIB) $(RT_LIB)
	@mkdir -p $(@D)
	$(call step,LD,$@)$(CC) $(CFLAGS) $(LDFLAGS) -shared -Wl,-z,defs -o $@ $^ $(RT_LDLIBS)

ALL_TARGETS += $(BUILD)/bin/splitft $(SHIM_LIB)
LINT_SRCS   += $(SHIM_SRCS) shim-posix/tools/splitft.c

# tests/unit/splitft: the shim's logic without LD_PRELOAD (no interpose.c), against real peers.
splitft_TEST_DEPS   := $(SHIM_CORE_SRCS:%.c=$(BUILD)/obj/%.o) $(NCL_LIB) $(NCLS_LIB) $(NCLW_LIB) $(RT_LIB)
splitft_TEST_LDLIBS := $(RT_LDLIBS)
$(BUILD)/obj/tests/unit/splitft/%.o: CPPFLAGS += $(NCL_TEST_INC) -Ishim-posix/src
