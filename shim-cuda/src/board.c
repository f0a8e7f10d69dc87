/* board.c: the shared-memory board of an Orion group (see board.h).
 *
 * Every counter is updated with atomics by its own process only (the launching threads and
 * the monitor thread), so the hot paths take no lock; the segment's robust mutex guards
 * only slot allocation and reclaim. A process that dies leaves its counts behind (an HP
 * client killed with kernels in flight would otherwise block best-effort work forever):
 * its slot is cleared when the pid is gone or belongs to a newer process (start time).
 */
#include <errno.h>
#include <limits.h>
#include <linux/futex.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "board.h"

/* Field 22 of /proc/PID/stat (start time in clock ticks), 0 when unreadable. */
static uint64_t start_time(uint32_t pid)
{
    char path[64], buf[1024];
    snprintf(path, sizeof path, "/proc/%u/stat", pid);
    FILE *f = fopen(path, "re");
    if (!f)
        return 0;
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = '\0';
    const char *p = strrchr(buf, ')'); /* the command name may hold spaces */
    if (!p)
        return 0;
    /* after ") ": state(3) ppid pgrp session tty tpgid flags minflt cminflt majflt cmajflt
     * utime stime cutime cstime priority nice threads itrealvalue starttime(22): skip 19
     * fields */
    p += 2;
    for (int field = 3; field < 22 && p; field++) {
        p = strchr(p, ' ');
        p = p ? p + 1 : NULL;
    }
    if (!p)
        return 0;
    char *end;
    unsigned long long v = strtoull(p, &end, 10);
    return end == p ? 0 : v;
}

static bool alive(const orion_slot *s)
{
    uint32_t pid = atomic_load(&s->pid);
    if (pid == 0)
        return false;
    if (kill((pid_t)pid, 0) != 0 && errno == ESRCH)
        return false;
    uint64_t st = start_time(pid);
    return st == 0 || st == atomic_load(&s->starttime); /* 0: cannot tell, keep it */
}

static void clear_slot(orion_board *b, orion_slot *s)
{
    if (atomic_exchange(&s->has_be, 0))
        atomic_fetch_sub(&b->be_clients, 1);
    atomic_store(&s->hp_inflight, 0);
    atomic_store(&s->hp_sms, 0);
    atomic_store(&s->hp_compute, 0);
    atomic_store(&s->hp_memory, 0);
    atomic_store(&s->hp_unknown, 0);
    atomic_store(&s->be_inflight_us, 0);
    atomic_store(&s->be_pending_us, 0);
    atomic_store(&s->hp_request_ns, 0);
    atomic_store(&s->priority, 0);
    atomic_store(&s->starttime, 0);
    atomic_store(&s->pid, 0);
}

static int reclaim_locked(orion_board_handle *h)
{
    int n = 0;
    for (int i = 0; i < ORION_SLOTS; i++) {
        orion_slot *s = &h->b->slot[i];
        if (s != h->mine && atomic_load(&s->pid) != 0 && !alive(s)) {
            clear_slot(h->b, s);
            n++;
        }
    }
    if (n) {
        atomic_fetch_add(&h->b->reclaimed, (uint64_t)n);
        orion_board_bump(h->b); /* what the dead held no longer blocks anyone */
    }
    return n;
}

int orion_board_reclaim(orion_board_handle *h)
{
    if (rt_shm_lock(&h->shm) < 0)
        return 0;
    int n = reclaim_locked(h);
    rt_shm_unlock(&h->shm);
    return n;
}

int orion_board_attach(orion_board_handle *h, const char *group, int priority, rt_err *err)
{
    char name[NAME_MAX];
    memset(h, 0, sizeof *h);
    snprintf(name, sizeof name, "orion.%u.%s", (unsigned)getuid(), group);
    int rc = rt_shm_open(&h->shm, name, ORION_BOARD_MAGIC, ORION_BOARD_VERSION, sizeof(orion_board),
                         NULL, NULL, err);
    if (rc < 0)
        return rc;
    h->b = h->shm.data;
    if (rt_shm_lock(&h->shm) < 0) {
        rt_shm_close(&h->shm);
        return rt_err_set(err, EIO, "board %s: cannot take its lock", name);
    }
    reclaim_locked(h);
    uint32_t pid = (uint32_t)getpid();
    for (int i = 0; i < ORION_SLOTS && !h->mine; i++)
        if (atomic_load(&h->b->slot[i].pid) == 0) {
            h->mine = &h->b->slot[i];
            clear_slot(h->b, h->mine);
            atomic_store(&h->mine->priority, (uint32_t)priority);
            atomic_store(&h->mine->starttime, start_time(pid));
            atomic_store(&h->mine->pid, pid);
        }
    rt_shm_unlock(&h->shm);
    if (h->mine && priority == 0)
        orion_board_mark_be(h);
    if (!h->mine) {
        rt_shm_close(&h->shm);
        return rt_err_set(err, ENOSPC, "board %s: all %d client slots are taken", name,
                          ORION_SLOTS);
    }
    return 0;
}

void orion_board_detach(orion_board_handle *h)
{
    if (!h->b)
        return;
    if (h->mine && rt_shm_lock(&h->shm) >= 0) {
        clear_slot(h->b, h->mine);
        rt_shm_unlock(&h->shm);
        orion_board_bump(h->b);
    }
    rt_shm_close(&h->shm);
    memset(h, 0, sizeof *h);
}

void orion_board_mark_be(orion_board_handle *h)
{
    if (h->mine && !atomic_load(&h->mine->has_be) && !atomic_exchange(&h->mine->has_be, 1))
        atomic_fetch_add(&h->b->be_clients, 1);
}

uint64_t orion_board_view_budget(const orion_board *b, orion_view *v, uint64_t fallback_us)
{
    uint64_t worst = 0;
    memset(v, 0, sizeof *v);
    for (int i = 0; i < ORION_SLOTS; i++) {
        const orion_slot *s = &b->slot[i];
        if (atomic_load_explicit(&s->pid, memory_order_relaxed) == 0)
            continue;
        v->hp_inflight += atomic_load_explicit(&s->hp_inflight, memory_order_relaxed);
        v->hp_sms += atomic_load_explicit(&s->hp_sms, memory_order_relaxed);
        v->hp_compute += atomic_load_explicit(&s->hp_compute, memory_order_relaxed);
        v->hp_memory += atomic_load_explicit(&s->hp_memory, memory_order_relaxed);
        v->hp_unknown += atomic_load_explicit(&s->hp_unknown, memory_order_relaxed);
        v->be_inflight_us += atomic_load_explicit(&s->be_inflight_us, memory_order_relaxed) +
                             atomic_load_explicit(&s->be_pending_us, memory_order_relaxed);
        uint64_t r = atomic_load_explicit(&s->hp_request_ns, memory_order_relaxed);
        worst = r > worst ? r : worst;
    }
    return worst ? worst / 40000 : fallback_us; /* 2.5 % of it, in µs */
}

void orion_board_view(const orion_board *b, orion_view *v) { orion_board_view_budget(b, v, 0); }

uint64_t orion_board_dur_budget_us(const orion_board *b, uint64_t fallback_us)
{
    orion_view v;
    return orion_board_view_budget(b, &v, fallback_us);
}

void orion_board_bump(orion_board *b)
{
    atomic_fetch_add(&b->generation, 1);
    if (atomic_load(&b->waiters) > 0)
        syscall(SYS_futex, &b->generation, FUTEX_WAKE, INT_MAX, NULL, NULL, 0);
}

void orion_board_wait(orion_board *b, uint32_t seen, uint64_t timeout_ns)
{
    struct timespec ts = {(time_t)(timeout_ns / 1000000000u), (long)(timeout_ns % 1000000000u)};
    atomic_fetch_add(&b->waiters, 1);
    if (atomic_load(&b->generation) == seen)
        syscall(SYS_futex, &b->generation, FUTEX_WAIT, seen, &ts, NULL, 0);
    atomic_fetch_sub(&b->waiters, 1);
}
