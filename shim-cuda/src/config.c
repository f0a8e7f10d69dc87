/* config.c: liborion.so's configuration, the ORION_* variables read once at load (any
 * problem means one log line and pass-through), and the library's start and end: the
 * constructor reads them, the destructor stops the monitor thread and writes ORION_STATS and
 * the learned durations. The layout of the other files is in shim.h.
 */
#include "shim.h" /* first: driver.h sets the CUDA API version of cuda.h */

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>

#include "rt/env.h"
#include "rt/log.h"

orion_config cfg;
rt_logger lg = RT_LOGGER_INIT("orion");

static const char *const prio_names[] = {"be", "hp", NULL};

static void load_config(void)
{
    rt_err err = {0};
    if (rt_log_configure(&lg, "ORION", &err) != 0)
        rt_log(&lg, RT_LOG_WARN, "%s", err.msg);
    const char *prio = getenv("ORION_PRIORITY");
    if (!prio || !*prio)
        return; /* not under orion-run: pass-through */
    int p = 0;
    snprintf(cfg.group, sizeof cfg.group, "default");
    rt_env_spec spec[] = {
        {.name = "ORION_PRIORITY",
         .def = NULL,
         .names = prio_names,
         .dest = &p,
         .type = RT_ENV_ENUM,
         .help = "hp or be"},
        {.name = "ORION_GROUP",
         .def = NULL,
         .dest = cfg.group,
         .type = RT_ENV_STRING,
         .help = "clients sharing one GPU"},
        {.name = "ORION_SM_THRESHOLD",
         .def = "0",
         .min = 0,
         .max = 1 << 20,
         .dest = &cfg.sm_threshold,
         .type = RT_ENV_INT,
         .help = "0: the device's SM count"},
        {.name = "ORION_DUR_THRESHOLD_US",
         .def = "0",
         .min = 0,
         .max = 1000000000,
         .dest = &cfg.dur_threshold_us,
         .type = RT_ENV_INT,
         .help = "0: 2.5 % of the HP request latency"},
        {.name = "ORION_PROFILE_DB",
         .def = NULL,
         .dest = cfg.profile_db,
         .type = RT_ENV_PATH,
         .flags = RT_PATH_EXISTS,
         .help = "profile database"},
        {.name = "ORION_LEARN",
         .def = "0",
         .dest = &cfg.learn,
         .type = RT_ENV_BOOL,
         .help = "learn durations"},
        {.name = "ORION_STATS",
         .def = NULL,
         .dest = cfg.stats,
         .type = RT_ENV_PATH,
         .help = "JSON statistics at exit"},
    };
    if (rt_env_load(spec, sizeof spec / sizeof spec[0], &err) != 0) {
        rt_log(&lg, RT_LOG_ERROR, "%s; passing every call through", err.msg);
        return;
    }
    for (const char *c = cfg.group; *c; c++)
        if (*c == '/') {
            rt_log(&lg, RT_LOG_ERROR,
                   "ORION_GROUP='%s': no '/' allowed; passing every call through", cfg.group);
            return;
        }
    if (cfg.profile_db[0] && orion_pdb_load(&cfg.db, cfg.profile_db, &err) != 0) {
        rt_log(&lg, RT_LOG_ERROR, "%s; passing every call through", err.msg);
        orion_pdb_free(&cfg.db);
        return;
    }
    if (cfg.learn && !cfg.profile_db[0])
        rt_log(
            &lg, RT_LOG_WARN,
            "ORION_LEARN=1 without ORION_PROFILE_DB: learned durations are used in this process only");
    cfg.priority = p == 1 ? CLS_HP : CLS_BE;
    cfg.counting = cfg.stats[0] != '\0';
    if (orion_board_attach(&cfg.board, cfg.group, cfg.priority, &err) != 0) {
        rt_log(&lg, RT_LOG_ERROR, "%s; passing every call through", err.msg);
        return;
    }
    cfg.active = true;
}

static void in_child(void)
{
    cfg.active = false; /* a forked child has no monitor thread: it passes through */
}

__attribute__((constructor)) static void orion_init(void)
{
    rt_hist_init(&st.wait_ns);
    rt_hist_init(&st.hp_kernel_ns);
    load_config();
    pthread_atfork(NULL, NULL, in_child);
}

/* Whether this process made an intercepted call. One that made none (a wrapper: timeout, a
 * shell, torchrun) writes no statistics: its empty file would replace the one its child
 * wrote. */
static bool made_calls(void)
{
    return atomic_load(&st.hp) + atomic_load(&st.be) + atomic_load(&st.pass) +
               atomic_load(&st.copies) + atomic_load(&st.syncs) >
           0;
}

__attribute__((destructor)) static void orion_fini(void)
{
    if (!cfg.active)
        return;
    monitor_stop(); /* before the driver goes away */
    if (cfg.stats[0] && made_calls())
        write_stats();
    if (cfg.learn && cfg.profile_db[0])
        write_learned();
    cfg.active = false;
    orion_board_detach(&cfg.board);
}
