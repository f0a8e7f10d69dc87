/* fuzz_env.c: libFuzzer target for the configuration parsers (sizes, durations, integers,
 * booleans, enums, host:port lists, path lists). Besides "no crash, no sanitizer report",
 * it checks what each parser promises: accepted values round-trip, bounds hold, every
 * refusal carries a message that says what is accepted. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "rt/env.h"

static void require(int cond, const char *what, const char *input)
{
    if (!cond) {
        fprintf(stderr, "fuzz_env: %s for input '%s'\n", what, input);
        abort();
    }
}

int LLVMFuzzerTestOneInput(const unsigned char *data, size_t size);
int LLVMFuzzerTestOneInput(const unsigned char *data, size_t size)
{
    if (size < 1 || size > 4096)
        return 0;
    char *s = malloc(size);
    memcpy(s, data + 1, size - 1);
    s[size - 1] = '\0';
    rt_err e = {0};
    switch (data[0] % 7) {
    case 0: {
        uint64_t v, back;
        if (rt_parse_size(s, 0, 1ULL << 50, &v, &e) == 0) {
            char buf[32];
            require(v <= 1ULL << 50, "size out of bounds", s);
            rt_format_size(v, buf, sizeof buf);
            require(rt_parse_size(buf, 0, UINT64_MAX, &back, NULL) == 0 && back == v,
                    "size does not round-trip", s);
        } else {
            require(strstr(e.msg, "accepted:") != NULL, "size refusal without 'accepted'", s);
        }
        break;
    }
    case 1: {
        uint64_t v;
        if (rt_parse_duration(s, RT_MS, RT_US, 3600 * RT_S, &v, &e) == 0)
            require(v >= RT_US && v <= 3600 * RT_S, "duration out of bounds", s);
        else
            require(strstr(e.msg, "accepted:") != NULL, "duration refusal without 'accepted'", s);
        break;
    }
    case 2: {
        long long v, back;
        if (rt_parse_int(s, -1000000, 1000000, &v, &e) == 0) {
            char buf[32];
            require(v >= -1000000 && v <= 1000000, "int out of bounds", s);
            snprintf(buf, sizeof buf, "%lld", v);
            require(rt_parse_int(buf, LLONG_MIN, LLONG_MAX, &back, NULL) == 0 && back == v,
                    "int does not round-trip", s);
        } else {
            require(strstr(e.msg, "accepted:") != NULL, "int refusal without 'accepted'", s);
        }
        break;
    }
    case 3: {
        bool b;
        static const char *const names[] = {"tcp", "rdma", NULL};
        int k;
        if (rt_parse_bool(s, &b, &e) != 0)
            require(e.msg[0] != '\0', "bool refusal without message", s);
        if (rt_parse_enum(s, names, &k, &e) == 0)
            require(k == 0 || k == 1, "enum index out of range", s);
        break;
    }
    case 4:
    case 5: {
        rt_hostports hp;
        if (rt_parse_hostports(s, 5, &hp, &e) == 0) {
            require(hp.n >= 1 && hp.n <= 5, "host list count", s);
            for (size_t i = 0; i < hp.n; i++) {
                require(hp.v[i].host[0] != '\0', "empty host accepted", s);
                require(hp.v[i].port != 0, "port 0 accepted", s);
                require(strlen(hp.v[i].host) < RT_HOST_MAX, "host too long", s);
            }
        } else {
            require(strstr(e.msg, "accepted") != NULL || strstr(e.msg, "entry") != NULL,
                    "host list refusal without reason", s);
        }
        break;
    }
    case 6: {
        static rt_pathlist pl;
        if (rt_parse_pathlist(s, 0, &pl, &e) == 0)
            require(pl.n >= 1 && pl.n <= RT_PATHS_MAX, "path list count", s);
        break;
    }
    }
    free(s);
    return 0;
}
