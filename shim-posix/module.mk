# shim-posix/module.mk: SplitFT's client side: the NCL client library (libncl.a), the
# splitft command, and the POSIX shim libsplitft.so.
NCL_SRCS := $(wildcard shim-posix/src/ncl_*.c) shim-posix/src/replay.c
NCL_LIB  := $(BUILD)/lib/libncl.a
$(NCL_LIB): $(NCL_SRCS:%.c=$(BUILD)/obj/%.o)
	@mkdir -p $(@D)
	$(call step,AR,$@)rm -f $@ && $(AR) rcs $@ $^
$(BUILD)/obj/shim-posix/%.o: CPPFLAGS += -Ishim-posix/include

$(BUILD)/bin/splitft: $(BUILD)/obj/shim-posix/tools/splitft.o $(NCL_LIB) $(RT_LIB)
	@mkdir -p $(@D)
	$(call step,LD,$@)$(CC) $(CFLAGS) $(LDFLAGS) -o $@ $^ $(RT_LDLIBS)

# The shim: wrappers (interpose.c) over the logic (core.c) and the real calls (sys.c); only
# the wrappers are exported (-fvisibility=hidden everywhere else).
SHIM_SRCS := shim-posix/src/core.c shim-posix/src/sys.c shim-posix/src/interpose.c
SHIM_LIB  := $(BUILD)/lib/libsplitft.so
$(SHIM_LIB): $(SHIM_SRCS:%.c=$(BUILD)/obj/%.o) $(NCL_LIB) $(RT_LIB)
	@mkdir -p $(@D)
	$(call step,LD,$@)$(CC) $(CFLAGS) $(LDFLAGS) -shared -Wl,-z,defs -o $@ $^ $(RT_LDLIBS)

ALL_TARGETS += $(NCL_LIB) $(BUILD)/bin/splitft $(SHIM_LIB)
LINT_SRCS   += $(NCL_SRCS) $(SHIM_SRCS) shim-posix/tools/splitft.c
splitft_TEST_DEPS   := $(BUILD)/obj/shim-posix/src/core.o $(BUILD)/obj/shim-posix/src/sys.o \
                       $(NCL_LIB) $(NCLS_LIB) $(RT_LIB)
splitft_TEST_LDLIBS := $(RT_LDLIBS)
