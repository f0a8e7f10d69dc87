# tests/module.mk: Criterion unit tests (tests/unit/<component>/test_*.c, one binary each,
# linked with <component>_TEST_DEPS and _TEST_LDLIBS) and libFuzzer targets (tests/fuzz).
UNIT_SRCS := $(wildcard tests/unit/*/test_*.c)
UNIT_TESTS := $(patsubst %.c,$(BUILD)/%,$(UNIT_SRCS))

define unit_rule
$(BUILD)/tests/unit/$(1)/$(2): $(BUILD)/obj/tests/unit/$(1)/$(2).o $$($(1)_TEST_DEPS)
	@mkdir -p $$(@D)
	$$(call step,LD,$$@)$$(CC) $$(CFLAGS) $$(LDFLAGS) -o $$@ $$< $$($(1)_TEST_DEPS) $$($(1)_TEST_LDLIBS) -lcriterion
endef
$(foreach t,$(UNIT_SRCS),$(eval $(call unit_rule,$(word 3,$(subst /, ,$(t))),$(basename $(notdir $(t))))))

$(BUILD)/obj/tests/%.o: CPPFLAGS += -Itests/unit

# Fuzz targets: tests/fuzz/fuzz_<name>.c, each linked with the runtime (built by the
# fuzz configuration of `make fuzz`, clang with coverage and sanitizers).
FUZZ_SRCS := $(wildcard tests/fuzz/fuzz_*.c)
FUZZ_TARGETS := $(patsubst tests/fuzz/%.c,$(BUILD)/fuzz/%,$(FUZZ_SRCS))
$(BUILD)/obj/tests/fuzz/fuzz_ncl_frame.o $(BUILD)/obj/tests/tools/%.o: CPPFLAGS += $(NCL_TEST_INC)
$(BUILD)/fuzz/%: $(BUILD)/obj/tests/fuzz/%.o $(NCLS_LIB) $(NCLW_LIB) $(RT_LIB)
	@mkdir -p $(@D)
	$(call step,LD,$@)$(CC) $(CFLAGS) -fsanitize=fuzzer,address,undefined -o $@ $^ $(RT_LDLIBS)
.PHONY: fuzz-bins
fuzz-bins: $(FUZZ_TARGETS)

LINT_SRCS += $(UNIT_SRCS) $(FUZZ_SRCS) $(wildcard tests/fixtures/*.c)

# Test tools: tests/tools/<name>.c -> $(BUILD)/tests/tools/<name>, linked with the NCL
# client and the runtime (programs the integration tests drive).
TOOL_SRCS := $(wildcard tests/tools/*.c)
TOOL_BINS := $(patsubst tests/tools/%.c,$(BUILD)/tests/tools/%,$(TOOL_SRCS))
$(BUILD)/tests/tools/%: $(BUILD)/obj/tests/tools/%.o $(NCL_LIB) $(NCLW_LIB) $(RT_LIB)
	@mkdir -p $(@D)
	$(call step,LD,$@)$(CC) $(CFLAGS) $(LDFLAGS) -o $@ $^ $(RT_LDLIBS) $(LDLIBS_EXTRA)
ALL_TARGETS += $(TOOL_BINS)
LINT_SRCS += $(TOOL_SRCS)
$(BUILD)/tests/tools/sqlite-bench: LDLIBS_EXTRA := -lsqlite3
include tests/fixtures/volatilefs/module.mk
include tests/fixtures/fakecuda/module.mk
