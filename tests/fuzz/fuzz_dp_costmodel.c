/* fuzz_dp_costmodel.c: libFuzzer target for DynaPipe's cost-model CSV parser
 * (dp_cost_model_parse). The input is split at the first two NUL bytes into the time, memory
 * and model-state files. Besides "no crash, no sanitizer report", it checks what the parser
 * promises: a refusal says why and leaves no model; an accepted model answers every query with
 * a non-negative number or NAN (outside its grid), reproduces nothing below zero, and its
 * memory grows with the micro-batch size. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dynapipe.h"

static void require(int cond, const char *what)
{
    if (!cond) {
        fprintf(stderr, "fuzz_dp_costmodel: %s (last error '%s')\n", what, dp_last_error());
        abort();
    }
}

static void probe(const dp_cost_model *cm)
{
    static const int lens[] = {1, 8, 16, 100, 512, 4096, 9000};
    for (int rc = 0; rc < DP_RC_COUNT; rc++) {
        if (!dp_cost_model_has_rc(cm, (dp_rc)rc))
            continue;
        for (int c = 0; c < DP_COMPONENTS; c++)
            for (size_t a = 0; a < sizeof lens / sizeof lens[0]; a++)
                for (int mbs = 1; mbs <= 64; mbs *= 4) {
                    int l = lens[a];
                    double t = dp_cm_time(cm, (dp_rc)rc, (dp_component)c, mbs & 1, mbs, l, l);
                    require(isnan(t) || t >= 0, "negative time");
                    double s1 = dp_cm_stored(cm, (dp_rc)rc, (dp_component)c, mbs, l, l);
                    double s2 = dp_cm_stored(cm, (dp_rc)rc, (dp_component)c, mbs + 1, l, l);
                    require(isnan(s1) || s1 >= 0, "negative memory");
                    require(isnan(s1) || isnan(s2) || s2 >= s1, "memory shrinks with mbs");
                }
    }
}

int LLVMFuzzerTestOneInput(const unsigned char *data, size_t size);
int LLVMFuzzerTestOneInput(const unsigned char *data, size_t size)
{
    const char *p = (const char *)data, *end = p + size;
    const char *a = memchr(p, 0, size);
    const char *b = a ? memchr(a + 1, 0, (size_t)(end - a - 1)) : NULL;
    const char *names[3] = {"time.csv", "memory.csv", "state.csv"};
    size_t l0 = a ? (size_t)(a - p) : size;
    const char *m = a ? a + 1 : end;
    size_t l1 = b ? (size_t)(b - m) : (size_t)(end - m);
    const char *s = b ? b + 1 : end;
    dp_cost_model *cm = (dp_cost_model *)&cm;
    dp_clear_error(); /* else an earlier input's message would satisfy the check below */
    dp_status st = dp_cost_model_parse("m", 1, p, l0, m, l1, s, (size_t)(end - s), names, &cm);
    if (st != DP_OK) {
        require(cm == NULL, "refusal left a model");
        require(dp_last_error()[0] != '\0', "refusal without a message");
        return 0;
    }
    require(cm != NULL, "accepted without a model");
    probe(cm);
    dp_cost_model_free(cm);
    return 0;
}
