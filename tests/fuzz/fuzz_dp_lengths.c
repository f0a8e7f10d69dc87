/* fuzz_dp_lengths.c: libFuzzer target for DynaPipe's length-file parser (dp_lengths_parse)
 * and the batch sampler behind it. Besides "no crash, no sanitizer report": a refusal says why
 * and leaves nothing; an accepted file has samples (a histogram: positive total weight) and a
 * batch drawn from it holds only samples of the file, within the token budget unless a single
 * sample is larger. */
#include <stdio.h>
#include <stdlib.h>

#include "dynapipe.h"

static void require(int cond, const char *what)
{
    if (!cond) {
        fprintf(stderr, "fuzz_dp_lengths: %s (last error '%s')\n", what, dp_last_error());
        abort();
    }
}

static int in_source(const dp_length_source *src, dp_sample x, int t1d)
{
    for (size_t i = 0; i < src->n; i++)
        if (src->v[i].input_len == x.input_len &&
            (src->dims == 2 || !src->histogram ? src->v[i].target_len : t1d) == x.target_len)
            return 1;
    return 0;
}

int LLVMFuzzerTestOneInput(const unsigned char *data, size_t size);
int LLVMFuzzerTestOneInput(const unsigned char *data, size_t size)
{
    dp_length_source src;
    dp_clear_error(); /* else an earlier input's message would satisfy the check below */
    if (dp_lengths_parse((const char *)data, size, "fuzz.csv", &src) != DP_OK) {
        require(src.v == NULL && src.n == 0, "refusal left samples");
        require(dp_last_error()[0] != '\0', "refusal without a message");
        return 0;
    }
    require(src.n > 0, "accepted without samples");
    require(!src.histogram || src.total > 0, "histogram without weight");
    dp_samples b;
    if (dp_lengths_batch(&src, 4096, 7, 3, 0, &b) == DP_OK) {
        long tok = 0;
        for (size_t i = 0; i < b.n; i++) {
            require(in_source(&src, b.v[i], 3), "batch sample not in the file");
            tok += (long)b.v[i].input_len + b.v[i].target_len;
        }
        require(b.n <= 1 || tok <= 4096 || !src.histogram, "batch over the budget");
        dp_samples_free(&b);
    }
    dp_lengths_free(&src);
    return 0;
}
