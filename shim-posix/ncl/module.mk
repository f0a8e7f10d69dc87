# shim-posix/ncl/module.mk: the near-compute log (NCL), SplitFT's replicated in-memory log.
#   libnclwire.a  the protocol and codec (src/proto.c) and the transports: TCP (src/tcp.c)
#                 and RDMA (src/rdma.c over src/rdma_ring.c); what both sides speak
#   libncl.a      the client: a session (src/session.h: src/open.c, src/io.c, src/commit.c)
#                 committing to a majority, one-shot requests (src/rpc.c), recovery
#                 (src/recover.c) and replay onto files (src/replay.c); header include/ncl/client.h
#   libnclserver.a, ncl-server  the peer daemon (server/main.c) and its store and event loop
#                 (server/store.c, server/server.c); it links the wire library, never the client
# rdma-core (libibverbs, librdmacm) is loaded with dlopen when the rdma transport is chosen, so
# programs and preloaded shims never need it installed to start.
NCLW_SRCS := shim-posix/ncl/src/proto.c shim-posix/ncl/src/tcp.c shim-posix/ncl/src/rdma.c \
             shim-posix/ncl/src/rdma_ring.c
NCLW_LIB  := $(BUILD)/lib/libnclwire.a
NCL_SRCS  := shim-posix/ncl/src/open.c shim-posix/ncl/src/io.c shim-posix/ncl/src/commit.c \
             shim-posix/ncl/src/rpc.c shim-posix/ncl/src/recover.c shim-posix/ncl/src/replay.c
NCL_LIB   := $(BUILD)/lib/libncl.a
NCLS_SRCS := shim-posix/ncl/server/store.c shim-posix/ncl/server/server.c
NCLS_LIB  := $(BUILD)/lib/libnclserver.a
NCL_INC   := -Ishim-posix/ncl/include

$(BUILD)/obj/shim-posix/ncl/%.o: CPPFLAGS += $(NCL_INC)

$(NCLW_LIB): $(NCLW_SRCS:%.c=$(BUILD)/obj/%.o)
	@mkdir -p $(@D)
	$(call step,AR,$@)rm -f $@ && $(AR) rcs $@ $^
$(NCL_LIB): $(NCL_SRCS:%.c=$(BUILD)/obj/%.o)
	@mkdir -p $(@D)
	$(call step,AR,$@)rm -f $@ && $(AR) rcs $@ $^
$(NCLS_LIB): $(NCLS_SRCS:%.c=$(BUILD)/obj/%.o)
	@mkdir -p $(@D)
	$(call step,AR,$@)rm -f $@ && $(AR) rcs $@ $^
$(BUILD)/bin/ncl-server: $(BUILD)/obj/shim-posix/ncl/server/main.o $(NCLS_LIB) $(NCLW_LIB) $(RT_LIB)
	@mkdir -p $(@D)
	$(call step,LD,$@)$(CC) $(CFLAGS) $(LDFLAGS) -o $@ $^ $(RT_LDLIBS)

ALL_TARGETS += $(NCLW_LIB) $(NCL_LIB) $(NCLS_LIB) $(BUILD)/bin/ncl-server
LINT_SRCS   += $(NCLW_SRCS) $(NCL_SRCS) $(NCLS_SRCS) shim-posix/ncl/server/main.c

# Unit tests under tests/unit/ncl: the codec, the transports (RDMA over the in-memory twin,
# tests/fixtures/rdma_twin.c), the store, and the client against real peers in threads
# (tests/fixtures/tpeers.h).
ncl_TEST_DEPS   := $(BUILD)/obj/tests/fixtures/rdma_twin.o $(NCL_LIB) $(NCLS_LIB) $(NCLW_LIB) $(RT_LIB)
ncl_TEST_LDLIBS := $(RT_LDLIBS)
NCL_TEST_INC    := $(NCL_INC) -Ishim-posix/ncl/src -Ishim-posix/ncl/server -Itests/fixtures
$(BUILD)/obj/tests/unit/ncl/%.o $(BUILD)/obj/tests/fixtures/rdma_twin.o: CPPFLAGS += $(NCL_TEST_INC)
