/* fuzz_tune.c: libFuzzer target for the reader of Minuet's tune cache (MINUET_TUNE_CACHE,
 * a JSON file anyone may edit). Besides "no crash, no sanitizer report": a refused image
 * says why, and every accepted entry holds what the reader promises (a device and a shape,
 * a threshold >= 0, NUL-terminated strings). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"

static void require(int cond, const char *what)
{
    if (!cond) {
        fprintf(stderr, "fuzz_tune: %s (last error '%s')\n", what, mn_last_error());
        abort();
    }
}

int LLVMFuzzerTestOneInput(const unsigned char *data, size_t size);
int LLVMFuzzerTestOneInput(const unsigned char *data, size_t size)
{
    size_t n = 0;
    mn_status s = mn_tune_parse((const char *)data, size, &n);
    if (s != MN_OK)
        require(s == MN_EFORMAT && mn_last_error()[0] != '\0', "refusal without a message");
    mn_tune_entry e[8];
    size_t held = mn_tune_entries(e, 8);
    require(held >= n, "fewer entries held than parsed");
    for (size_t i = 0; i < held && i < 8; i++) {
        require(memchr(e[i].device, '\0', sizeof e[i].device) != NULL, "device not terminated");
        require(memchr(e[i].shape, '\0', sizeof e[i].shape) != NULL, "shape not terminated");
        require(e[i].group_threshold >= 0, "negative threshold accepted");
    }
    mn_tune_forget();
    return 0;
}
