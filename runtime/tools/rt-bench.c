/* rt-bench: micro-benchmarks of the shared runtime's hot pieces (CRC-32C hardware vs table,
 * histogram recording, the lock-free log formatter). Writes CSV and a Markdown table.
 *
 *   rt-bench OUT_DIR      -> OUT_DIR/runtime.csv, OUT_DIR/runtime.md
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "rt/crc32c.h"
#include "rt/log.h"
#include "rt/stats.h"

typedef struct row {
    char name[64];
    double ns_per_op;
    double gbps; /* 0 when not a throughput */
} row;

static row rows[32];
static int nrows;

static volatile uint32_t sink;

static void crc_row(const char *name, uint32_t (*f)(uint32_t, const void *, size_t), size_t len)
{
    unsigned char *buf = malloc(len);
    for (size_t i = 0; i < len; i++)
        buf[i] = (unsigned char)(i * 131);
    size_t iters = (256u << 20) / len + 16; /* about 256 MiB hashed */
    uint64_t t0 = rt_now_ns();
    for (size_t i = 0; i < iters; i++)
        sink ^= f((uint32_t)i, buf, len);
    uint64_t dt = rt_now_ns() - t0;
    row *r = &rows[nrows++];
    snprintf(r->name, sizeof r->name, "crc32c_%s_%zuB", name, len);
    r->ns_per_op = (double)dt / (double)iters;
    r->gbps = (double)len * (double)iters / (double)dt;
    free(buf);
}

static void fmt_call(char *buf, size_t len, const char *f, ...)
{
    va_list ap;
    va_start(ap, f);
    rt_fmt(buf, len, f, ap);
    va_end(ap);
}

int main(int argc, char **argv)
{
    if (argc != 2 || strcmp(argv[1], "--help") == 0) {
        fprintf(
            stderr,
            "usage: rt-bench OUT_DIR\n  writes OUT_DIR/runtime.csv and OUT_DIR/runtime.md: CRC-32C (hardware and table), histogram recording and log formatting costs\n");
        return argc == 2 ? 0 : 2;
    }
    size_t lens[] = {64, 4096, 65536};
    for (size_t i = 0; i < 3; i++) {
        crc_row("sw", rt_crc32c_sw, lens[i]);
        if (rt_crc32c_hw_available())
            crc_row("hw", rt_crc32c_hw, lens[i]);
    }
    rt_hist *h = malloc(sizeof *h);
    rt_hist_init(h);
    const size_t n = 20000000;
    uint64_t t0 = rt_now_ns();
    for (size_t i = 0; i < n; i++)
        rt_hist_record(h, i * 2654435761u % 10000000);
    uint64_t dt = rt_now_ns() - t0;
    row *r = &rows[nrows++];
    snprintf(r->name, sizeof r->name, "hist_record");
    r->ns_per_op = (double)dt / (double)n;
    free(h);
    char line[256];
    t0 = rt_now_ns();
    for (size_t i = 0; i < 2000000; i++)
        fmt_call(line, sizeof line, "commit seq %llu to %s:%d took %zu ns", (unsigned long long)i,
                 "127.0.0.1", 7000, i);
    dt = rt_now_ns() - t0;
    r = &rows[nrows++];
    snprintf(r->name, sizeof r->name, "log_fmt_line");
    r->ns_per_op = (double)dt / 2000000.0;

    char path[4096];
    snprintf(path, sizeof path, "%s/runtime.csv", argv[1]);
    FILE *csv = fopen(path, "w");
    snprintf(path, sizeof path, "%s/runtime.md", argv[1]);
    FILE *md = fopen(path, "w");
    if (!csv || !md) {
        perror("rt-bench: cannot write results");
        return 1;
    }
    fprintf(csv, "benchmark,ns_per_op,gbytes_per_s\n");
    fprintf(md, "| benchmark | ns/op | GB/s |\n|---|---:|---:|\n");
    for (int i = 0; i < nrows; i++) {
        fprintf(csv, "%s,%.2f,%.3f\n", rows[i].name, rows[i].ns_per_op, rows[i].gbps);
        fprintf(md, "| %s | %.2f | %s |\n", rows[i].name, rows[i].ns_per_op,
                rows[i].gbps > 0 ? (snprintf(line, sizeof line, "%.2f", rows[i].gbps), line) : "");
    }
    fclose(csv);
    fclose(md);
    printf("rt-bench: %d rows in %s/runtime.{csv,md}\n", nrows, argv[1]);
    return 0;
}
