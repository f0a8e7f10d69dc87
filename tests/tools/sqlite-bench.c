/* sqlite-bench: one INSERT per transaction against SQLite (the real library), for SplitFT's
 * benchmark: transactions per second and commit latency percentiles.
 *
 *   sqlite-bench DB wal|delete full|normal|off N [--csv] [--exclusive]
 * journal mode WAL or DELETE (rollback journal), PRAGMA synchronous FULL, NORMAL or OFF.
 * --exclusive sets locking_mode=EXCLUSIVE: the lock is taken once instead of per transaction,
 * which matters on a network file system, where each POSIX lock is a round trip.
 */
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "rt/stats.h"

static void check(int rc, sqlite3 *db, const char *what)
{
    if (rc != SQLITE_OK && rc != SQLITE_DONE && rc != SQLITE_ROW) {
        fprintf(stderr, "sqlite-bench: %s: %s\n", what, sqlite3_errmsg(db));
        exit(1);
    }
}

int main(int argc, char **argv)
{
    if (argc < 5) {
        fprintf(stderr,
                "usage: sqlite-bench DB wal|delete full|normal|off N [--csv] [--exclusive]\n");
        return 2;
    }
    long n = strtol(argv[4], NULL, 10);
    bool csv = false, exclusive = false;
    for (int i = 5; i < argc; i++) {
        if (strcmp(argv[i], "--csv") == 0) {
            csv = true;
        } else if (strcmp(argv[i], "--exclusive") == 0) {
            exclusive = true;
        } else {
            fprintf(stderr, "sqlite-bench: unknown option '%s'\n", argv[i]);
            return 2;
        }
    }
    sqlite3 *db;
    check(sqlite3_open(argv[1], &db), db, "open");
    char sql[256];
    snprintf(sql, sizeof sql,
             "%sPRAGMA journal_mode=%s; PRAGMA synchronous=%s; CREATE TABLE IF NOT "
             "EXISTS t(k INTEGER PRIMARY KEY, v TEXT);",
             exclusive ? "PRAGMA locking_mode=EXCLUSIVE; " : "", argv[2], argv[3]);
    check(sqlite3_exec(db, sql, NULL, NULL, NULL), db, "setup");
    sqlite3_stmt *ins;
    check(sqlite3_prepare_v2(db, "INSERT INTO t(v) VALUES(?)", -1, &ins, NULL), db, "prepare");
    rt_hist *h = malloc(sizeof *h);
    rt_hist_init(h);
    char val[100];
    memset(val, 'v', sizeof val - 1);
    val[sizeof val - 1] = '\0';
    uint64_t t0 = rt_now_ns();
    for (long i = 0; i < n; i++) {
        uint64_t a = rt_now_ns();
        sqlite3_bind_text(ins, 1, val, -1, SQLITE_STATIC);
        check(sqlite3_step(ins), db, "insert"); /* autocommit: one transaction */
        sqlite3_reset(ins);
        rt_hist_record(h, rt_now_ns() - a);
    }
    double secs = (double)(rt_now_ns() - t0) / 1e9;
    sqlite3_finalize(ins);
    sqlite3_close(db);
    double p50 = (double)rt_hist_quantile(h, 0.5) / 1e3,
           p99 = (double)rt_hist_quantile(h, 0.99) / 1e3;
    if (csv)
        printf("%.0f,%.1f,%.1f\n", (double)n / secs, p50, p99);
    else
        printf("%ld transactions in %.2f s: %.0f/s, latency p50 %.1f us p99 %.1f us\n", n, secs,
               (double)n / secs, p50, p99);
    free(h);
    return 0;
}
