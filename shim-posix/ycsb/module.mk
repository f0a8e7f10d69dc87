# shim-posix/ycsb/module.mk: splitft-ycsb, YCSB's core workloads A-F against Redis (RESP by
# hand), RocksDB and SQLite (their C APIs); the benchmark driver of SplitFT's applications.
# The workload's pure parts (workload.c, values.c, hist.c) are what tests/unit/ycsb links.
YCSB_CORE_SRCS := shim-posix/ycsb/workload.c shim-posix/ycsb/values.c shim-posix/ycsb/hist.c
YCSB_SRCS := $(YCSB_CORE_SRCS) shim-posix/ycsb/ycsb.c shim-posix/ycsb/check.c \
             shim-posix/ycsb/backend_redis.c \
             shim-posix/ycsb/backend_rocksdb.c shim-posix/ycsb/backend_sqlite.c
YCSB_LDLIBS := -lrocksdb -lsqlite3 -lpthread -lm

$(BUILD)/bin/splitft-ycsb: $(YCSB_SRCS:%.c=$(BUILD)/obj/%.o) $(RT_LIB)
	@mkdir -p $(@D)
	$(call step,LD,$@)$(CC) $(CFLAGS) $(LDFLAGS) -o $@ $^ $(YCSB_LDLIBS) $(RT_LDLIBS)

ALL_TARGETS += $(BUILD)/bin/splitft-ycsb
LINT_SRCS   += $(YCSB_SRCS)

# tests/unit/ycsb: the generators, the operation mix, values and histograms, no backend.
ycsb_TEST_DEPS   := $(YCSB_CORE_SRCS:%.c=$(BUILD)/obj/%.o) $(RT_LIB)
ycsb_TEST_LDLIBS := $(RT_LDLIBS)
$(BUILD)/obj/tests/unit/ycsb/%.o: CPPFLAGS += -Ishim-posix/ycsb
