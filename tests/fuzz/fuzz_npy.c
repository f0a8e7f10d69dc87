/* fuzz_npy.c: libFuzzer target for the .npy reader (mn_npy_parse). Besides "no crash, no
 * sanitizer report", it checks what the reader promises: an accepted image is int32 or
 * float32 whose rows * cols * 4 bytes are exactly the bytes after the header, copied as they
 * are; a refused one leaves no array behind and says why. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "minuet.h"

static void require(int cond, const char *what)
{
    if (!cond) {
        fprintf(stderr, "fuzz_npy: %s (last error '%s')\n", what, mn_last_error());
        abort();
    }
}

/* Where the data starts, from the preamble (the reader validated it when it accepts). */
static size_t data_offset(const unsigned char *d)
{
    if (d[6] == 1)
        return 10 + (size_t)(d[8] | d[9] << 8);
    return 12 + (size_t)((uint32_t)d[8] | (uint32_t)d[9] << 8 | (uint32_t)d[10] << 16 |
                         (uint32_t)d[11] << 24);
}

int LLVMFuzzerTestOneInput(const unsigned char *data, size_t size);
int LLVMFuzzerTestOneInput(const unsigned char *data, size_t size)
{
    mn_array a;
    mn_status s = mn_npy_parse(data, size, &a);
    if (s != MN_OK) {
        require(s == MN_EFORMAT || s == MN_ENOMEM, "refusal is not MN_EFORMAT");
        require(a.data == NULL && a.rows == 0 && a.cols == 0, "refusal left an array");
        require(mn_last_error()[0] != '\0', "refusal without a message");
        return 0;
    }
    require(a.dtype == 'i' || a.dtype == 'f', "accepted dtype is not int32 or float32");
    require(a.data != NULL, "accepted array without data");
    require(size >= 10 && data_offset(data) <= size, "accepted without a whole header");
    size_t off = data_offset(data), bytes = size - off;
    require(a.cols == 0 || a.rows <= bytes / 4 / a.cols, "rows * cols * 4 exceeds the data");
    require(a.rows * a.cols * 4 == bytes, "rows * cols * 4 differs from the data size");
    require(memcmp(a.data, data + off, bytes) == 0, "data not copied as is");
    free(a.data);
    return 0;
}
