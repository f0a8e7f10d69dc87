/* policy.h: Orion's scheduling rule as a pure function over the board's state (policy.c),
 * and the kernel classes it reasons about. No driver calls, no shared memory: the unit tests
 * drive it with hand-made states. */
#ifndef ORION_POLICY_H
#define ORION_POLICY_H

#include <stdint.h>

#pragma GCC visibility push(hidden)

typedef enum orion_profile {
    ORION_UNKNOWN = 0,
    ORION_COMPUTE = 1, /* compute-bound: saturates the SMs */
    ORION_MEMORY = 2,  /* memory-bound: saturates DRAM bandwidth */
} orion_profile;

/* What is in flight on the device, summed over every client of the group. */
typedef struct orion_view {
    uint32_t hp_inflight;                       /* high-priority kernels launched, not done */
    uint32_t hp_sms;                            /* SMs they need */
    uint32_t hp_compute, hp_memory, hp_unknown; /* how many of them of each profile */
    uint64_t be_inflight_us;                    /* estimated duration of BE work in flight */
} orion_view;

typedef struct orion_limits {
    uint32_t sm_threshold;     /* ORION_SM_THRESHOLD: SMs HP + the BE kernel may use */
    uint64_t dur_threshold_us; /* ORION_DUR_THRESHOLD_US: BE work allowed in flight */
} orion_limits;

typedef struct orion_kernel {
    orion_profile profile;
    uint32_t sm_need;
    uint64_t dur_us; /* estimated duration (profile database, learned, or the default) */
} orion_kernel;

typedef enum orion_verdict {
    ORION_GO = 0,
    ORION_WAIT_PROFILE,  /* not the complement of the HP kernels in flight */
    ORION_WAIT_SMS,      /* would take SMs the HP kernels hold */
    ORION_WAIT_DURATION, /* enough BE work already in flight */
} orion_verdict;

/* May this best-effort kernel launch now? Always (3): the BE work in flight must be under the
 * duration threshold (so BE never queues more than that ahead of the next HP request); and
 * while HP kernels are in flight also (1) its profile complements every in-flight HP
 * kernel's (compute vs memory) or either side is unknown, and (2) its SM need plus the HP
 * kernels' fits the SM threshold. The first rule that fails (1, 2, 3) is the verdict. */
orion_verdict orion_policy(const orion_view *v, const orion_kernel *k, const orion_limits *l);
const char *orion_verdict_name(orion_verdict v);
const char *orion_profile_name(orion_profile p);

#pragma GCC visibility pop

#endif
