# shim-posix/module.mk: SplitFT's client side: the NCL client library (libncl.a), the
# splitft command; the POSIX shim (libsplitft.so) lands here with the SplitFT 2 issue.
NCL_SRCS := $(wildcard shim-posix/src/ncl_*.c) shim-posix/src/replay.c
NCL_LIB  := $(BUILD)/lib/libncl.a
$(NCL_LIB): $(NCL_SRCS:%.c=$(BUILD)/obj/%.o)
	@mkdir -p $(@D)
	rm -f $@ && $(AR) rcs $@ $^
$(BUILD)/obj/shim-posix/%.o: CPPFLAGS += -Ishim-posix/include

$(BUILD)/bin/splitft: $(BUILD)/obj/shim-posix/tools/splitft.o $(NCL_LIB) $(RT_LIB)
	@mkdir -p $(@D)
	$(CC) $(CFLAGS) $(LDFLAGS) -o $@ $^ $(RT_LDLIBS)

ALL_TARGETS += $(NCL_LIB) $(BUILD)/bin/splitft
LINT_SRCS   += $(NCL_SRCS) shim-posix/tools/splitft.c
splitft_TEST_DEPS   := $(NCL_LIB) $(NCLS_LIB) $(RT_LIB)
splitft_TEST_LDLIBS := $(RT_LDLIBS)
