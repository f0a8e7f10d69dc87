/* stats.c: liborion.so's counters and what it writes at exit: ORION_STATS (one JSON object:
 * launches by class, copies, syncs, BE waits and their reasons, wait time and HP kernel
 * latency histograms) and, under ORION_LEARN, the measured durations for
 * `orion-profile merge`.
 */
#include "shim.h" /* first: driver.h sets the CUDA API version of cuda.h */

#include <stdio.h>
#include <unistd.h>

#include "policy.h"
#include "rt/log.h"
#include "rt/stats.h"

orion_counters st;

void write_stats(void)
{
    static char buf[16384];
    rt_json j;
    rt_json_init(&j, buf, sizeof buf);
    rt_json_begin(&j, NULL);
    rt_json_i64(&j, "pid", (int64_t)getpid());
    rt_json_str(&j, "priority", cfg.priority == CLS_HP ? "hp" : "be");
    rt_json_str(&j, "group", cfg.group);
    rt_json_begin(&j, "launches");
    rt_json_u64(&j, "hp", atomic_load(&st.hp));
    rt_json_u64(&j, "be", atomic_load(&st.be));
    rt_json_u64(&j, "passthrough", atomic_load(&st.pass));
    rt_json_u64(&j, "captured", atomic_load(&st.captured));
    rt_json_u64(&j, "graph", atomic_load(&st.graph));
    rt_json_u64(&j, "untracked", atomic_load(&st.untracked));
    rt_json_u64(&j, "hp_without_be", atomic_load(&st.hp_alone));
    rt_json_end(&j);
    rt_json_u64(&j, "copies", atomic_load(&st.copies));
    rt_json_u64(&j, "syncs", atomic_load(&st.syncs));
    rt_json_u64(&j, "be_waits", atomic_load(&st.waits));
    rt_json_u64(&j, "be_admission_retries", atomic_load(&st.admission_retries));
    rt_json_u64(&j, "be_stale_claims_dropped", atomic_load(&st.drift_repairs));
    rt_json_begin(&j, "wait_reasons");
    for (int r = 1; r < 4; r++)
        rt_json_u64(&j, orion_verdict_name((orion_verdict)r), atomic_load(&st.reason[r]));
    rt_json_end(&j);
    rt_json_hist(&j, "be_wait", &st.wait_ns);
    rt_json_hist(&j, "hp_kernel", &st.hp_kernel_ns);
    rt_json_u64(&j, "board_reclaimed", cfg.board.b ? atomic_load(&cfg.board.b->reclaimed) : 0);
    rt_json_end(&j);
    const char *text = rt_json_text(&j);
    rt_err err = {0};
    if (!text || rt_stats_write_file(cfg.stats, text, &err) != 0)
        rt_log(&lg, RT_LOG_WARN, "ORION_STATS: %s", text ? err.msg : "statistics too long");
}

/* ORION_LEARN: the measured mean duration of each shape into PROFILE_DB.learned.PID, which
 * `orion-profile merge` folds into the database. */
void write_learned(void)
{
    orion_pdb out = {0};
    for (size_t i = 0; i < SHAPES; i++) {
        shape *s = atomic_load(&shapes[i]);
        if (!s || !s->name[0] || atomic_load(&s->learned_n) == 0)
            continue;
        double us =
            (double)atomic_load(&s->learned_sum_ns) / 1e3 / (double)atomic_load(&s->learned_n);
        orion_pdb_put(&out, s->name, s->grid, s->block, s->profile, us);
    }
    char path[PATH_MAX + 32];
    snprintf(path, sizeof path, "%s.learned.%ld", cfg.profile_db, (long)getpid());
    rt_err err = {0};
    if (out.n && orion_pdb_save(&out, path, &err) != 0)
        rt_log(&lg, RT_LOG_WARN, "ORION_LEARN: %s", err.msg);
    orion_pdb_free(&out);
}
