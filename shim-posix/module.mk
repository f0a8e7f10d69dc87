# shim-posix/module.mk: SplitFT's client side: the POSIX shim libsplitft.so and the splitft
# command. The near-compute log they use is its own component, shim-posix/ncl (module.mk
# there), reached through its header ncl/client.h.
include shim-posix/ncl/module.mk

$(BUILD)/obj/shim-posix/src/%.o $(BUILD)/obj/shim-posix/tools/%.o: CPPFLAGS += $(NCL_INC)

$(BUILD)/bin/splitft: $(BUILD)/obj/shim-posix/tools/splitft.o $(NCL_LIB) $(NCLW_LIB) $(RT_LIB)
	@mkdir -p $(@D)
	$(call step,LD,$@)$(CC) $(CFLAGS) $(LDFLAGS) -o $@ $^ $(RT_LDLIBS)

# The shim: wrappers (interpose.c) over the logic (core.c) and the real calls (sys.c); only
# the wrappers are exported (-fvisibility=hidden everywhere else).
SHIM_SRCS := shim-posix/src/core.c shim-posix/src/sys.c shim-posix/src/interpose.c
SHIM_LIB  := $(BUILD)/lib/libsplitft.so
$(SHIM_LIB): $(SHIM_SRCS:%.c=$(BUILD)/obj/%.o) $(NCL_LIB) $(NCLW_LIB) $(RT_LIB)
	@mkdir -p $(@D)
	$(call step,LD,$@)$(CC) $(CFLAGS) $(LDFLAGS) -shared -Wl,-z,defs -o $@ $^ $(RT_LDLIBS)

ALL_TARGETS += $(BUILD)/bin/splitft $(SHIM_LIB)
LINT_SRCS   += $(SHIM_SRCS) shim-posix/tools/splitft.c

# tests/unit/splitft: the shim's logic (core.c, sys.c) without LD_PRELOAD, against real peers.
SHIM_CORE_OBJS      := $(BUILD)/obj/shim-posix/src/core.o $(BUILD)/obj/shim-posix/src/sys.o
splitft_TEST_DEPS   := $(SHIM_CORE_OBJS) $(NCL_LIB) $(NCLS_LIB) $(NCLW_LIB) $(RT_LIB)
splitft_TEST_LDLIBS := $(RT_LDLIBS)
$(BUILD)/obj/tests/unit/splitft/%.o: CPPFLAGS += $(NCL_TEST_INC) -Ishim-posix/src
