/* cli.h: what the dynapipe command's files share: its options, their parsing (options.c)
 * and the error helpers. */
#ifndef DP_CLI_H
#define DP_CLI_H

#include <limits.h>
#include <stdbool.h>
#include <stdio.h>
#include <time.h>

#include "dynapipe.h"

typedef struct opts {
    const char *cmd, *lengths, *model, *cost_model, *format, *out, *csv, *md;
    const char *models, *stage_list, *token_list, *data, *layers;
    char cm_env[PATH_MAX]; /* $DYNAPIPE_COST_MODEL, or empty */
    char cm_dir[PATH_MAX]; /* scratch for the path next to the binary */
    long tokens;
    long long seed;
    int tp, rank, replica, repeat, target_len;
    bool json, has_layers, has_hidden;
    dp_config cfg; /* filled after the cost model is known; explicit values kept here */
    dp_config set; /* the values given on the command line; 0 / NAN when not given */
} opts;

/* The --help text. */
extern const char usage[];
/* A usage error: the message (fmt with one string), a pointer to --help; returns 2. */
static inline int usage_err(const char *fmt, const char *arg)
{
    fprintf(stderr, "dynapipe: ");
    fprintf(stderr, fmt, arg);
    fprintf(stderr, "\n(see dynapipe --help)\n");
    return 2;
}

/* The library's last error on stderr; returns 1. */
static inline int fail(void)
{
    fprintf(stderr, "dynapipe: %s\n", dp_last_error());
    return 1;
}

/* Seconds on the monotonic clock. */
static inline double now(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}
/* The environment knobs (DYNAPIPE_*): defaults that options override; 0 or an exit status. */
int load_env(opts *o);
/* The command line into o: 0, -1 for --help, or an exit status. */
int parse(int argc, char **argv, opts *o);

#endif
