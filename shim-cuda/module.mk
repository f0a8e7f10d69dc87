# shim-cuda/module.mk: Orion: liborion.so (the libcuda interposer: exports only the CUDA entry
# points it wraps, dlsym and orion_set_thread_priority), its policy/board/profile objects for
# the unit tests, and the orion-profile command.
# The shim's files (config, binding, tracking, gating, stats) are laid out in src/shim.h;
# src/driver.h lists every driver entry point they call.
ORION_CORE_SRCS := shim-cuda/src/policy.c shim-cuda/src/board.c shim-cuda/src/profile.c
ORION_SHIM_SRCS := shim-cuda/src/config.c shim-cuda/src/binding.c shim-cuda/src/tracking.c \
                   shim-cuda/src/gating.c shim-cuda/src/stats.c
ORION_SRCS      := $(ORION_CORE_SRCS) $(ORION_SHIM_SRCS)
ORION_LIB       := $(BUILD)/lib/liborion.so
ORION_CORE_OBJS := $(ORION_CORE_SRCS:%.c=$(BUILD)/obj/%.o)
CUDA_INC        ?= /usr/local/cuda/include

$(BUILD)/obj/shim-cuda/%.o: CPPFLAGS += -Ishim-cuda/include -Ishim-cuda/src -isystem $(CUDA_INC)

$(ORION_LIB): $(ORION_SRCS:%.c=$(BUILD)/obj/%.o) $(RT_LIB)
	@mkdir -p $(@D)
	$(call step,LD,$@)$(CC) $(CFLAGS) $(LDFLAGS) -shared -Wl,-z,defs -o $@ $^ $(RT_LDLIBS)

$(BUILD)/bin/orion-profile: $(BUILD)/obj/shim-cuda/tools/orion-profile.o $(ORION_CORE_OBJS) $(RT_LIB)
	@mkdir -p $(@D)
	$(call step,LD,$@)$(CC) $(CFLAGS) $(LDFLAGS) -o $@ $^ $(RT_LDLIBS)

ALL_TARGETS += $(ORION_LIB) $(BUILD)/bin/orion-profile
LINT_SRCS   += $(ORION_SRCS) shim-cuda/tools/orion-profile.c

orion_TEST_DEPS   := $(ORION_CORE_OBJS) $(RT_LIB)
orion_TEST_LDLIBS := $(RT_LDLIBS)
$(BUILD)/obj/tests/unit/orion/%.o: CPPFLAGS += -Ishim-cuda/include -Ishim-cuda/src

# orion-client: the driver-API program of Orion's tests, demo and benchmark, linked with -lcuda
# against the virtual GPU (tests/fixtures/fakecuda); on a real GPU scripts/gpu-check builds it
# against the real driver.
ORION_CLIENT := $(BUILD)/tests/orion/orion-client
$(ORION_CLIENT): $(BUILD)/obj/tests/fixtures/orion/orion-client.o $(BUILD)/lib/fakecuda/libcuda.so
	@mkdir -p $(@D)
	$(call step,LD,$@)$(CC) $(CFLAGS) $(LDFLAGS) -o $@ $< -L$(BUILD)/lib/fakecuda -lcuda -ldl -lpthread -lm
$(BUILD)/obj/tests/fixtures/orion/%.o: CPPFLAGS += -isystem $(CUDA_INC)
ALL_TARGETS += $(ORION_CLIENT)
LINT_SRCS   += tests/fixtures/orion/orion-client.c

# The fuzz target of the profile-database and ncu readers.
$(BUILD)/fuzz/fuzz_orion_pdb: $(ORION_CORE_OBJS)
$(BUILD)/obj/tests/fuzz/fuzz_orion_pdb.o: CPPFLAGS += -Ishim-cuda/src
$(BUILD)/fuzz/fuzz_orion_pdb: RT_LDLIBS := $(RT_LIB) $(RT_LDLIBS) # the objects use the runtime
