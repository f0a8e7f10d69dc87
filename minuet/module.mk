# minuet/module.mk: Minuet, sparse convolution with sort-based kernel maps: libminuet.a (the
# unit tests and tools link it) and libminuet.so (the Python package and the spconv hook load
# it). Every minuet/src/*.c goes into both; the .so carries the runtime (env parsing) inside.
MN_SRCS    := $(wildcard minuet/src/*.c)
MN_OBJS    := $(MN_SRCS:%.c=$(BUILD)/obj/%.o)
MN_LIB     := $(BUILD)/lib/libminuet.a
MN_SO      := $(BUILD)/lib/libminuet.so
MN_LDLIBS  := -lpthread -lm

# The CUDA backend (minuet/src/cuda/*.cu), compiled with nvcc for sm_80 and sm_90 (with
# sm_90 PTX for later GPUs) and linked with the static CUDA runtime, which finds the driver
# when the program first asks for a device: the library loads and its CPU backend runs on a
# machine with no driver. Without nvcc (NVCC, else CUDA_HOME/bin/nvcc, /usr/local/cuda, PATH)
# minuet/src/cuda/none.c stands in and every mn_cuda_* call says the build had no nvcc.
CUDA_HOME  ?= /usr/local/cuda
NVCC       ?= $(firstword $(wildcard $(CUDA_HOME)/bin/nvcc) $(shell command -v nvcc 2>/dev/null))
ifneq ($(NVCC),)
MN_CUDA_LIBDIR := $(dir $(NVCC))../lib64
MN_CU_SRCS := $(wildcard minuet/src/cuda/*.cu)
MN_CU_OBJS := $(MN_CU_SRCS:%.cu=$(BUILD)/obj/%.o)
MN_LDLIBS  += -L$(MN_CUDA_LIBDIR) -lcudart_static -lrt -ldl -lstdc++
MN_NVCCFLAGS := -O3 -std=c++17 -Xcompiler -fPIC,-fvisibility=hidden -Iminuet/include -Iminuet/src \
                -gencode arch=compute_80,code=sm_80 -gencode arch=compute_90,code=sm_90 \
                -gencode arch=compute_90,code=compute_90
$(BUILD)/obj/minuet/src/cuda/%.o: minuet/src/cuda/%.cu $(wildcard minuet/src/cuda/*.cuh minuet/src/cuda/*.h) minuet/include/minuet.h
	@mkdir -p $(@D)
	$(call step,NVCC,$<)$(NVCC) $(MN_NVCCFLAGS) -c $< -o $@
else
MN_CU_OBJS := $(BUILD)/obj/minuet/src/cuda/none.o
endif
MN_OBJS    += $(MN_CU_OBJS)

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
minuet_TEST_LDLIBS := $(RT_LDLIBS) $(MN_LDLIBS) -lm
$(BUILD)/obj/tests/%.o: CPPFLAGS += -Iminuet/include
# The unit tests also reach the library's internal headers (internal.h, keys.h) and share
# tests/unit/minuet/mn_test.h.
$(BUILD)/obj/tests/unit/minuet/%.o: CPPFLAGS += -Iminuet/src
$(BUILD)/fuzz/fuzz_npy $(BUILD)/fuzz/fuzz_ply $(BUILD)/fuzz/fuzz_tune: $(MN_LIB)
$(BUILD)/obj/tests/fuzz/fuzz_tune.o: CPPFLAGS += -Iminuet/src # the tuner's internals
# libminuet after the runtime it uses (the last-error helper; the environment parser)
$(BUILD)/fuzz/fuzz_npy $(BUILD)/fuzz/fuzz_ply $(BUILD)/fuzz/fuzz_tune: RT_LDLIBS := $(RT_LIB) $(RT_LDLIBS) $(MN_LDLIBS) -lm

# The minuet command.
$(BUILD)/bin/minuet: $(BUILD)/obj/minuet/tools/minuet.o $(MN_LIB) $(RT_LIB)
	@mkdir -p $(@D)
	$(call step,LD,$@)$(CC) $(CFLAGS) $(LDFLAGS) -o $@ $^ $(MN_LDLIBS) $(RT_LDLIBS)
ALL_TARGETS += $(BUILD)/bin/minuet
LINT_SRCS   += minuet/tools/minuet.c

# minuet-cuda-check: every CUDA kernel against its CPU twin, then timings (scripts/gpu-check).
ifneq ($(NVCC),)
MN_CHECK_SRCS := minuet/tools/minuet-cuda-check.c minuet/tools/cuda_check_kmap.c \
                 minuet/tools/cuda_check_conv.c
$(BUILD)/bin/minuet-cuda-check: $(MN_CHECK_SRCS:%.c=$(BUILD)/obj/%.o) $(MN_LIB) $(RT_LIB)
	@mkdir -p $(@D)
	$(call step,LD,$@)$(CC) $(CFLAGS) $(LDFLAGS) -o $@ $^ $(MN_LDLIBS) $(RT_LDLIBS)
$(MN_CHECK_SRCS:%.c=$(BUILD)/obj/%.o): CPPFLAGS += -Iminuet/src -isystem $(dir $(NVCC))../include
ALL_TARGETS += $(BUILD)/bin/minuet-cuda-check
LINT_SRCS   += $(MN_CHECK_SRCS)
endif
