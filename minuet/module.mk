# minuet/module.mk: Minuet, sparse convolution with sort-based kernel maps: libminuet.a (the
# unit tests and tools link it) and libminuet.so (the Python package and the spconv hook load
# it). Every minuet/src/*.c goes into both; the .so carries the runtime (env parsing) inside.
MN_SRCS    := $(wildcard minuet/src/*.c)
MN_OBJS    := $(MN_SRCS:%.c=$(BUILD)/obj/%.o)
MN_LIB     := $(BUILD)/lib/libminuet.a
MN_SO      := $(BUILD)/lib/libminuet.so
MN_LDLIBS  := -lpthread -lm

# The public API (minuet.h) is exported from the .so: minuet objects build with default
# visibility; minuet/src/internal.h marks what the sources share as hidden.
$(BUILD)/obj/minuet/%.o: CPPFLAGS += -Iminuet/include
$(BUILD)/obj/minuet/%.o: CFLAGS += -fvisibility=default

$(MN_LIB): $(MN_OBJS)
	@mkdir -p $(@D)
	$(call step,AR,$@)rm -f $@ && $(AR) rcs $@ $^

# -Wl,-z,defs: every symbol the .so needs is in it or in the libraries named here.
$(MN_SO): $(MN_OBJS) $(RT_LIB)
	@mkdir -p $(@D)
	$(call step,LD,$@)$(CC) $(CFLAGS) $(LDFLAGS) -shared -Wl,-z,defs -o $@ $^ $(MN_LDLIBS) $(RT_LDLIBS)

ALL_TARGETS += $(MN_LIB) $(MN_SO)
LINT_SRCS   += $(MN_SRCS)

# Unit tests under tests/unit/minuet, and the fuzz targets of the file readers.
minuet_TEST_DEPS   := $(MN_LIB) $(RT_LIB)
minuet_TEST_LDLIBS := $(RT_LDLIBS) -lm
$(BUILD)/obj/tests/%.o: CPPFLAGS += -Iminuet/include
# The unit tests also reach the library's internal headers (internal.h, keys.h) and share
# tests/unit/minuet/mn_test.h.
$(BUILD)/obj/tests/unit/minuet/%.o: CPPFLAGS += -Iminuet/src
$(BUILD)/fuzz/fuzz_npy $(BUILD)/fuzz/fuzz_ply $(BUILD)/fuzz/fuzz_tune: $(MN_LIB)
$(BUILD)/obj/tests/fuzz/fuzz_tune.o: CPPFLAGS += -Iminuet/src # the tuner's internals
# libminuet after the runtime it uses (the last-error helper; the environment parser)
$(BUILD)/fuzz/fuzz_npy $(BUILD)/fuzz/fuzz_ply $(BUILD)/fuzz/fuzz_tune: RT_LDLIBS := $(RT_LIB) $(RT_LDLIBS) -lm

# The minuet command.
$(BUILD)/bin/minuet: $(BUILD)/obj/minuet/tools/minuet.o $(MN_LIB) $(RT_LIB)
	@mkdir -p $(@D)
	$(call step,LD,$@)$(CC) $(CFLAGS) $(LDFLAGS) -o $@ $^ $(MN_LDLIBS) $(RT_LDLIBS)
ALL_TARGETS += $(BUILD)/bin/minuet
LINT_SRCS   += minuet/tools/minuet.c
