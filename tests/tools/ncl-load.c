/* ncl-load: a test client of the near-compute log that says exactly which commits were
 * acknowledged, so a test can check after crashes and recovery that none was lost.
 *
 *   ncl-load --file PATH [--count N] [--size B] [--pause-us U] [--stats OUT.json]
 *
 * Peers, id and timeout come from SPLITFT_PEERS, SPLITFT_ID, SPLITFT_TIMEOUT_MS. Record i
 * holds B bytes of pattern(i) at offset i*B of PATH. Prints "ack I" after each
 * acknowledged commit and "fail I: why" after each failed one (stdout, line-buffered).
 * Exit status: 0 when every commit was acknowledged, 1 otherwise.
 */
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "ncl/client.h"

static volatile sig_atomic_t stop;
static void on_term(int sig)
{
    (void)sig;
    stop = 1;
}

/* Byte j of record i: what the test checks in the replayed file. */
static unsigned char pattern(uint64_t i, size_t j)
{
    return (unsigned char)('A' + (i * 7 + j) % 26);
}

int main(int argc, char **argv)
{
    static const struct option lo[] = {
        {"file", required_argument, NULL, 'f'},  {"count", required_argument, NULL, 'n'},
        {"size", required_argument, NULL, 's'},  {"pause-us", required_argument, NULL, 'p'},
        {"stats", required_argument, NULL, 'S'}, {NULL, 0, NULL, 0}};
    const char *file = NULL, *stats = NULL;
    long long count = 1000000000LL;
    size_t size = 64;
    long pause_us = 0;
    int ch;
    while ((ch = getopt_long(argc, argv, "", lo, NULL)) != -1) {
        if (ch == 'f')
            file = optarg;
        else if (ch == 'n')
            count = strtoll(optarg, NULL, 10);
        else if (ch == 's')
            size = (size_t)strtoul(optarg, NULL, 10);
        else if (ch == 'p')
            pause_us = strtol(optarg, NULL, 10);
        else if (ch == 'S')
            stats = optarg;
        else
            return 2;
    }
    if (!file || size == 0 || size > 65536) {
        fprintf(stderr, "usage: ncl-load --file PATH [--count N] [--size B<=65536] [--pause-us U] "
                        "[--stats OUT]\n");
        return 2;
    }
    setvbuf(stdout, NULL, _IOLBF, 0);
    signal(SIGTERM, on_term);
    ncl_config cfg;
    rt_err e;
    if (ncl_config_from_env(&cfg, NULL, &e) < 0) {
        fprintf(stderr, "ncl-load: %s\n", e.msg);
        return 2;
    }
    ncl_client *c = ncl_open(&cfg, NCL_OPEN_DISCARD, &e);
    if (!c) {
        fprintf(stderr, "ncl-load: %s\n", e.msg);
        return 1;
    }
    unsigned char *buf = malloc(size);
    int failures = 0;
    for (long long i = 0; i < count && !stop; i++) {
        for (size_t j = 0; j < size; j++)
            buf[j] = pattern((uint64_t)i, j);
        ncl_write w = {.dev = 1,
                       .ino = 1,
                       .offset = (uint64_t)i * size,
                       .path = file,
                       .data = buf,
                       .len = (uint32_t)size};
        if (ncl_commit(c, &w, 1, NULL, &e) == 0) {
            printf("ack %lld\n", i);
        } else {
            printf("fail %lld: %s\n", i, e.msg);
            failures++;
        }
        if (pause_us)
            usleep((useconds_t)pause_us);
    }
    if (stats) {
        char *js = malloc(1 << 16);
        rt_json j;
        rt_json_init(&j, js, 1 << 16);
        rt_json_begin(&j, NULL);
        ncl_client_stats_json(c, &j);
        rt_json_end(&j);
        if (rt_json_text(&j))
            rt_stats_write_file(stats, rt_json_text(&j), NULL);
        free(js);
    }
    ncl_close(c);
    free(buf);
    return failures ? 1 : 0;
}
