# dynapipe/module.mk: DynaPipe, the micro-batch planner: libdynapipe.a (the unit tests and the
# tool link it) and libdynapipe.so (the Python package, dynapipe/python, loads it). Every
# dynapipe/src/*.c goes into both.
DP_SRCS   := $(wildcard dynapipe/src/*.c)
DP_OBJS   := $(DP_SRCS:%.c=$(BUILD)/obj/%.o)
DP_LIB    := $(BUILD)/lib/libdynapipe.a
DP_SO     := $(BUILD)/lib/libdynapipe.so
DP_LDLIBS := -lm

# The public API (dynapipe.h) is exported from the .so: dynapipe objects build with default
# visibility; dynapipe/src/internal.h marks what the sources share as hidden.
$(BUILD)/obj/dynapipe/%.o: CPPFLAGS += -Idynapipe/include
$(BUILD)/obj/dynapipe/%.o: CFLAGS += -fvisibility=default

$(DP_LIB): $(DP_OBJS)
	@mkdir -p $(@D)
	$(call step,AR,$@)rm -f $@ && $(AR) rcs $@ $^

# The .so carries the runtime it uses (the last-error helper, rt/lasterr.h) inside: runtime
# objects build with -fvisibility=hidden, so none of it is exported.
$(DP_SO): $(DP_OBJS) $(RT_LIB)
	@mkdir -p $(@D)
	$(call step,LD,$@)$(CC) $(CFLAGS) $(LDFLAGS) -shared -Wl,-z,defs -o $@ $^ $(DP_LDLIBS) $(RT_LDLIBS)

ALL_TARGETS += $(DP_LIB) $(DP_SO)
LINT_SRCS   += $(DP_SRCS)

# Unit tests under tests/unit/dynapipe, and the fuzz targets of the two file parsers.
dynapipe_TEST_DEPS   := $(DP_LIB) $(RT_LIB)
dynapipe_TEST_LDLIBS := $(RT_LDLIBS)
$(BUILD)/obj/tests/%.o: CPPFLAGS += -Idynapipe/include
$(BUILD)/fuzz/fuzz_dp_costmodel $(BUILD)/fuzz/fuzz_dp_lengths: $(DP_LIB)
# libdynapipe after the runtime it uses (the last-error helper)
$(BUILD)/fuzz/fuzz_dp_costmodel $(BUILD)/fuzz/fuzz_dp_lengths: RT_LDLIBS := $(RT_LIB) $(RT_LDLIBS)

# The dynapipe command.
$(BUILD)/bin/dynapipe: $(BUILD)/obj/dynapipe/tools/dynapipe.o $(BUILD)/obj/dynapipe/tools/options.o \
                    $(DP_LIB) $(RT_LIB)
	@mkdir -p $(@D)
	$(call step,LD,$@)$(CC) $(CFLAGS) $(LDFLAGS) -o $@ $^ $(RT_LDLIBS)
ALL_TARGETS += $(BUILD)/bin/dynapipe
LINT_SRCS   += dynapipe/tools/dynapipe.c dynapipe/tools/options.c
