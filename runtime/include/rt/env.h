/* rt/env.h: typed parsing of configuration from environment variables.
 *
 * Every component describes its knobs in one table of rt_env_spec and loads it once
 * with rt_env_load(). A malformed value yields one message naming the variable, the
 * value and what is accepted, e.g.
 *   SPLITFT_SMALL_MAX='12Q': not a size; accepted: a whole number of bytes with an
 *   optional K, M, G or T suffix (powers of 1024), from 0 to 1G
 * The rt_parse_* functions are the same parsers without getenv(), for tools and fuzzing.
 */
#ifndef RT_ENV_H
#define RT_ENV_H

#include <limits.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "rt/err.h"

#define RT_HOST_MAX  256 /* bytes of a host name, with its NUL */
#define RT_HOSTS_MAX 16  /* entries of a host:port list */
#define RT_PATHS_MAX 16  /* entries of a colon-separated path list */

#define RT_NS 1ULL
#define RT_US 1000ULL
#define RT_MS 1000000ULL
#define RT_S  1000000000ULL

typedef struct rt_hostport {
    char host[RT_HOST_MAX]; /* name or address; IPv6 without its brackets */
    uint16_t port;
} rt_hostport;

typedef struct rt_hostports {
    size_t n;
    rt_hostport v[RT_HOSTS_MAX];
} rt_hostports;

typedef struct rt_pathlist {
    size_t n;
    char v[RT_PATHS_MAX][PATH_MAX];
} rt_pathlist;

/* Path checks (flags of rt_parse_path / RT_ENV_PATH / RT_ENV_PATHLIST). */
enum {
    RT_PATH_EXISTS = 1u << 0,   /* must exist */
    RT_PATH_DIR = 1u << 1,      /* must be an existing directory */
    RT_PATH_REALPATH = 1u << 2, /* store the canonical absolute path (implies EXISTS) */
};

/* Parsers. Each returns 0, or -EINVAL with err->msg saying what is accepted. Leading and
 * trailing blanks are ignored; anything else that does not fit is refused. */
int rt_parse_int(const char *s, long long min, long long max, long long *out, rt_err *err);
/* Bytes: "4096", "64K", "64KiB", "1m", "2G", "1T" (powers of 1024). */
int rt_parse_size(const char *s, uint64_t min, uint64_t max, uint64_t *out, rt_err *err);
/* Durations: "250" (in unit_ns), "250ms", "1.5s", "20us", "100ns", "2m", "1h". */
int rt_parse_duration(const char *s, uint64_t unit_ns, uint64_t min_ns, uint64_t max_ns,
                      uint64_t *out_ns, rt_err *err);
/* 1/0, true/false, yes/no, on/off, any case. */
int rt_parse_bool(const char *s, bool *out, rt_err *err);
/* One of `names` (NULL-terminated), any case; *out = its index. */
int rt_parse_enum(const char *s, const char *const *names, int *out, rt_err *err);
/* "host:port" or "[v6addr]:port", port 0 (any free port) to 65535: for listen addresses. */
int rt_parse_listen_addr(const char *s, rt_hostport *out, rt_err *err);
/* Comma-separated list of 1..max_n entries (max_n <= RT_HOSTS_MAX), each "host:port" or
 * "[v6addr]:port" with port 1..65535. */
int rt_parse_hostports(const char *s, size_t max_n, rt_hostports *out, rt_err *err);
int rt_parse_path(const char *s, unsigned flags, char *out, size_t outlen, rt_err *err);
/* Colon-separated list of paths, each checked with `flags`. */
int rt_parse_pathlist(const char *s, unsigned flags, rt_pathlist *out, rt_err *err);

/* Render a byte count the way rt_parse_size reads it back ("64K", "1536"). */
void rt_format_size(uint64_t v, char *out, size_t outlen);

typedef enum rt_env_type {
    RT_ENV_INT,       /* dest: long long; bounds min..max */
    RT_ENV_SIZE,      /* dest: uint64_t; bounds min..max bytes */
    RT_ENV_DURATION,  /* dest: uint64_t ns; bounds min..max ns; bare numbers in unit_ns */
    RT_ENV_BOOL,      /* dest: bool */
    RT_ENV_ENUM,      /* dest: int (index into names) */
    RT_ENV_HOSTPORTS, /* dest: rt_hostports; at most max entries (0: RT_HOSTS_MAX) */
    RT_ENV_PATH,      /* dest: char[PATH_MAX]; flags RT_PATH_* */
    RT_ENV_PATHLIST,  /* dest: rt_pathlist; flags RT_PATH_* */
    RT_ENV_STRING,    /* dest: char[RT_HOST_MAX]; any non-empty text shorter than that */
} rt_env_type;

typedef struct rt_env_spec {
    const char *name; /* full variable name, e.g. "SPLITFT_SMALL_MAX" */
    const char *def;  /* default, written as a user would; NULL: unset leaves dest as is */
    const char *help; /* one line for --help and the README */
    long long min, max;
    uint64_t unit_ns;         /* RT_ENV_DURATION: unit of a bare number (default RT_MS) */
    const char *const *names; /* RT_ENV_ENUM: NULL-terminated */
    void *dest;
    rt_env_type type;
    unsigned flags; /* RT_ENV_PATH(LIST): RT_PATH_* */
} rt_env_spec;

/* Parse every variable of the table (its default when unset or empty). Stops at the first
 * bad one: returns -EINVAL with err->msg "NAME='value': why; accepted: ...". Defaults go
 * through the same parser, so a bad default is caught by the component's tests. */
int rt_env_load(const rt_env_spec *specs, size_t n, rt_err *err);

#endif
