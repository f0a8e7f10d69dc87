/* test_crc32c.c: CRC-32C against published vectors, hardware against table, chaining. */
#include <criterion/criterion.h>
#include <stdlib.h>
#include <string.h>

#include "rt/crc32c.h"

typedef uint32_t (*crc_fn)(uint32_t, const void *, size_t);

/* RFC 3720 (iSCSI) appendix B.4 and the common "123456789" check value. */
static void check_vectors(crc_fn f, const char *name)
{
    unsigned char buf[48];
    cr_assert_eq(f(0, "123456789", 9), 0xE3069283u, "%s check value", name);
    cr_assert_eq(f(0, "", 0), 0u, "%s empty", name);
    memset(buf, 0, 32);
    cr_assert_eq(f(0, buf, 32), 0x8A9136AAu, "%s zeros", name);
    memset(buf, 0xff, 32);
    cr_assert_eq(f(0, buf, 32), 0x62A8AB43u, "%s ones", name);
    for (int i = 0; i < 32; i++)
        buf[i] = (unsigned char)i;
    cr_assert_eq(f(0, buf, 32), 0x46DD794Eu, "%s incrementing", name);
    for (int i = 0; i < 32; i++)
        buf[i] = (unsigned char)(31 - i);
    cr_assert_eq(f(0, buf, 32), 0x113FDB5Cu, "%s decrementing", name);
    static const unsigned char iscsi_read[48] = {
        0x01, 0xc0, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
        0x00, 0x00, 0x00, 0x00, 0x14, 0x00, 0x00, 0x00, 0x00, 0x00, 0x04, 0x00,
        0x00, 0x00, 0x00, 0x14, 0x00, 0x00, 0x00, 0x18, 0x28, 0x00, 0x00, 0x00,
        0x00, 0x00, 0x00, 0x00, 0x02, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00};
    cr_assert_eq(f(0, iscsi_read, 48), 0xD9963A56u, "%s iSCSI read command", name);
}

Test(crc32c, software_vectors) { check_vectors(rt_crc32c_sw, "sw"); }

Test(crc32c, hardware_vectors)
{
    if (!rt_crc32c_hw_available())
        cr_skip_test("this CPU has no SSE4.2 crc32 instruction");
    check_vectors(rt_crc32c_hw, "hw");
}

Test(crc32c, dispatcher_vectors) { check_vectors(rt_crc32c, "dispatch"); }

Test(crc32c, hw_equals_sw_at_every_length_and_alignment)
{
    unsigned char *buf = malloc(4096 + 16);
    srand(7);
    for (int i = 0; i < 4096 + 16; i++)
        buf[i] = (unsigned char)rand();
    for (size_t off = 0; off < 8; off++)
        for (size_t len = 0; len < 300; len++)
            cr_assert_eq(rt_crc32c(0, buf + off, len), rt_crc32c_sw(0, buf + off, len),
                         "off %zu len %zu", off, len);
    cr_assert_eq(rt_crc32c(0, buf, 4096), rt_crc32c_sw(0, buf, 4096));
    free(buf);
}

Test(crc32c, chaining_equals_whole)
{
    const char *s = "The quick brown fox jumps over the lazy dog";
    size_t n = strlen(s);
    uint32_t whole = rt_crc32c(0, s, n);
    cr_assert_eq(whole, 0x22620404u);
    for (size_t cut = 0; cut <= n; cut++) {
        cr_assert_eq(rt_crc32c(rt_crc32c(0, s, cut), s + cut, n - cut), whole);
        cr_assert_eq(rt_crc32c_sw(rt_crc32c_sw(0, s, cut), s + cut, n - cut), whole);
    }
}

Test(crc32c, detects_single_bit_flips)
{
    unsigned char buf[256];
    for (int i = 0; i < 256; i++)
        buf[i] = (unsigned char)(i * 37);
    uint32_t good = rt_crc32c(0, buf, sizeof buf);
    for (int bit = 0; bit < 256 * 8; bit++) {
        buf[bit / 8] ^= (unsigned char)(1u << (bit % 8));
        cr_assert_neq(rt_crc32c(0, buf, sizeof buf), good, "bit %d", bit);
        buf[bit / 8] ^= (unsigned char)(1u << (bit % 8));
    }
}
