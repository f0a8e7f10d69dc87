/* test_proto.c: NCL frame and record codec: round trips and every malformed case. */
#include <criterion/criterion.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "ncl/proto.h"

static size_t make_frame(unsigned char *out, uint8_t type, uint64_t req, const void *pay,
                         size_t len)
{
    struct iovec iov = {(void *)pay, len};
    ncl_hdr_encode(out, type, 0, req, &iov, 1);
    memcpy(out + NCL_HDR_SIZE, pay, len);
    return NCL_HDR_SIZE + len;
}

Test(ncl_proto, frame_roundtrip)
{
    unsigned char f[256];
    const char pay[] = "hello, peers";
    make_frame(f, NCL_APPEND, 0x1122334455667788ULL, pay, sizeof pay);
    ncl_hdr h;
    rt_err e;
    cr_assert_eq(ncl_hdr_decode(f, 1024, &h, &e), 0, "%s", e.msg);
    cr_assert_eq(h.type, NCL_APPEND);
    cr_assert_eq(h.len, sizeof pay);
    cr_assert_eq(h.req, 0x1122334455667788ULL);
    cr_assert_eq(ncl_frame_verify(f, f + NCL_HDR_SIZE, h.len, &e), 0, "%s", e.msg);
    /* Pieces give the same CRC as one buffer. */
    unsigned char g[NCL_HDR_SIZE];
    struct iovec two[2] = {{(void *)pay, 5}, {(void *)(pay + 5), sizeof pay - 5}};
    ncl_hdr_encode(g, NCL_APPEND, 0, 0x1122334455667788ULL, two, 2);
    cr_assert_eq(memcmp(f, g, NCL_HDR_SIZE), 0);
}

Test(ncl_proto, frame_rejections)
{
    unsigned char f[256], bad[256];
    size_t n = make_frame(f, NCL_HELLO, 1, "abc", 3);
    ncl_hdr h;
    rt_err e;
    memcpy(bad, f, n);
    bad[0] ^= 1;
    cr_assert_eq(ncl_hdr_decode(bad, 1024, &h, &e), -EPROTO);
    cr_assert(strstr(e.msg, "magic"), "%s", e.msg);
    memcpy(bad, f, n);
    bad[4] = 0x55;
    cr_assert_eq(ncl_hdr_decode(bad, 1024, &h, &e), -EPROTO);
    cr_assert(strstr(e.msg, "unknown frame type"), "%s", e.msg);
    memcpy(bad, f, n);
    bad[6] = 1;
    cr_assert_eq(ncl_hdr_decode(bad, 1024, &h, &e), -EPROTO);
    cr_assert_eq(ncl_hdr_decode(f, 2, &h, &e), -EMSGSIZE);
    cr_assert(strstr(e.msg, "exceeds the maximum"), "%s", e.msg);
    /* Every single-bit flip in header or payload fails the CRC (or the header checks). */
    for (size_t bit = 0; bit < n * 8; bit++) {
        memcpy(bad, f, n);
        bad[bit / 8] ^= (unsigned char)(1u << (bit % 8));
        if (ncl_hdr_decode(bad, 1024, &h, NULL) == 0 && h.len == 3)
            cr_assert_neq(ncl_frame_verify(bad, bad + NCL_HDR_SIZE, 3, NULL), 0, "bit %zu", bit);
    }
}

Test(ncl_proto, record_roundtrip_and_checks)
{
    const char data[] = "0123456789abcdef";
    ncl_rec r = {.seq = 42,
                 .dev = 7,
                 .ino = 99,
                 .offset = 4096,
                 .len = 16,
                 .path_len = 9,
                 .kind = NCL_REC_WRITE,
                 .path = "/a/b/c.db",
                 .data = data};
    size_t sz = ncl_rec_size(&r);
    cr_assert_eq(sz, NCL_REC_HDR_SIZE + 9 + 16);
    unsigned char *buf = malloc(sz + 8);
    ncl_rec_encode(buf, &r);
    ncl_rec d;
    size_t used;
    rt_err e;
    cr_assert_eq(ncl_rec_decode(buf, sz, &d, &used, &e), 0, "%s", e.msg);
    cr_assert_eq(used, sz);
    cr_assert_eq(d.seq, 42);
    cr_assert_eq(d.dev, 7);
    cr_assert_eq(d.ino, 99);
    cr_assert_eq(d.offset, 4096);
    cr_assert_eq(d.len, 16);
    cr_assert_eq(d.crc, r.crc);
    cr_assert_eq(memcmp(d.path, "/a/b/c.db", 9), 0);
    cr_assert_eq(memcmp(d.data, data, 16), 0);
    /* truncated anywhere */
    for (size_t cut = 0; cut < sz; cut++)
        cr_assert_lt(ncl_rec_decode(buf, cut, &d, &used, NULL), 0, "cut %zu", cut);
    /* any flipped bit */
    for (size_t bit = 0; bit < sz * 8; bit++) {
        buf[bit / 8] ^= (unsigned char)(1u << (bit % 8));
        cr_assert_lt(ncl_rec_decode(buf, sz + 8, &d, &used, NULL), 0, "bit %zu", bit);
        buf[bit / 8] ^= (unsigned char)(1u << (bit % 8));
    }
    /* unknown kind, even with a matching CRC */
    r.kind = 9;
    ncl_rec_encode(buf, &r);
    cr_assert_eq(ncl_rec_decode(buf, sz, &d, &used, &e), -EPROTO);
    cr_assert(strstr(e.msg, "unknown kind"), "%s", e.msg);
    free(buf);
}

Test(ncl_proto, cursor_stops_at_end)
{
    unsigned char b[12];
    ncl_put_u64(ncl_put_u32(b, 0xdeadbeef), 0x0102030405060708ULL);
    ncl_cur c = ncl_cur_make(b, sizeof b);
    uint32_t a;
    uint64_t x;
    cr_assert(ncl_get_u32(&c, &a));
    cr_assert_eq(a, 0xdeadbeef);
    cr_assert(ncl_get_u64(&c, &x));
    cr_assert_eq(x, 0x0102030405060708ULL);
    uint8_t y;
    cr_assert_not(ncl_get_u8(&c, &y));
    cr_assert(c.bad);
    c = ncl_cur_make(b, 3);
    cr_assert_not(ncl_get_u32(&c, &a));
    const unsigned char *p;
    cr_assert_not(ncl_get_bytes(&c, 1, &p)); /* stays failed */
}

Test(ncl_proto, client_ids)
{
    cr_assert(ncl_id_valid("redis-1.a_b", 11));
    cr_assert_not(ncl_id_valid("", 0));
    cr_assert_not(ncl_id_valid("a/b", 3));
    cr_assert_not(ncl_id_valid("a b", 3));
    char long_id[70];
    memset(long_id, 'x', sizeof long_id);
    cr_assert(ncl_id_valid(long_id, 64));
    cr_assert_not(ncl_id_valid(long_id, 65));
}
