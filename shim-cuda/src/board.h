/* board.h: the shared-memory board of an Orion group (/dev/shm/orion.<uid>.<group>): one slot
 * per client process with what it has in flight, and a generation counter that waiting
 * best-effort callers sleep on (futex) and completions bump. board.c. */
#ifndef ORION_BOARD_H
#define ORION_BOARD_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "policy.h"
#include "rt/err.h"
#include "rt/shm.h"

#pragma GCC visibility push(hidden)

#define ORION_BOARD_MAGIC   0x4f52424eu /* "ORBN" */
#define ORION_BOARD_VERSION 3u
#define ORION_SLOTS         64

typedef struct orion_slot {
    _Atomic uint32_t pid;       /* 0: free */
    _Atomic uint32_t priority;  /* the process's ORION_PRIORITY: 1 hp, 0 be */
    _Atomic uint64_t starttime; /* /proc/PID/stat field 22: tells a reused pid apart */
    _Atomic uint32_t hp_inflight, hp_sms, hp_compute, hp_memory, hp_unknown;
    _Atomic uint64_t be_inflight_us;
    _Atomic uint64_t be_pending_us; /* BE kernels admitted by the gate, not yet claimed */
    _Atomic uint64_t hp_request_ns; /* moving average of the HP client's request latency */
    _Atomic uint32_t has_be;        /* this process launches BE work (counted in be_clients) */
    char pad[4];
} orion_slot;

typedef struct orion_board {
    _Atomic uint32_t generation; /* futex word: bumped when in-flight work completes */
    _Atomic uint32_t waiters;    /* BE callers asleep on it (completions wake only then) */
    _Atomic uint64_t reclaimed;  /* slots of dead processes cleared */
    _Atomic uint32_t be_clients; /* slots with has_be: while 0, HP launches need no tracking */
    orion_slot slot[ORION_SLOTS];
} orion_board;

typedef struct orion_board_handle {
    rt_shm shm;
    orion_board *b;
    orion_slot *mine;
} orion_board_handle;

/* Open (or create) the group's board and take a slot for this process; dead processes'
 * slots are reclaimed first. A board of another layout version is refused (-EPROTO) with
 * a message. */
int orion_board_attach(orion_board_handle *h, const char *group, int priority, rt_err *err);
void orion_board_detach(orion_board_handle *h);

/* The sum over all slots (lock-free reads; a slot being updated may be seen half-way, which
 * the policy tolerates: it is re-evaluated at the next completion). */
void orion_board_view(const orion_board *b, orion_view *v);
/* The duration budget: 2.5 % of the largest HP request latency measured on the board, or
 * `fallback_us` while none is measured. */
uint64_t orion_board_dur_budget_us(const orion_board *b, uint64_t fallback_us);
/* Both in one pass over the slots (what a waiting best-effort caller reads per look): fills
 * *v and returns the duration budget. */
uint64_t orion_board_view_budget(const orion_board *b, orion_view *v, uint64_t fallback_us);

/* Clear the slots of processes that no longer exist (or whose pid was reused); returns how
 * many. Called at attach and by callers that have waited long. */
int orion_board_reclaim(orion_board_handle *h);

/* Count this process as a BE client (once). */
void orion_board_mark_be(orion_board_handle *h);

/* Wake waiting BE callers after a completion. */
void orion_board_bump(orion_board *b);
/* Sleep until the generation differs from `seen` or `timeout_ns` passes. */
void orion_board_wait(orion_board *b, uint32_t seen, uint64_t timeout_ns);

#pragma GCC visibility pop

#endif
