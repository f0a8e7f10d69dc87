/* policy.c: Orion's rule for best-effort kernels (the paper's, with the device's own SM
 * count and a duration budget taken from the HP client's measured latency instead of
 * hard-coded V100 numbers). See policy.h. */
#include "policy.h"

orion_verdict orion_policy(const orion_view *v, const orion_kernel *k, const orion_limits *l)
{
    /* The duration rule holds even while no HP kernel is in flight (a deviation from the
     * paper's wording, in the README): otherwise a BE client queues unbounded work on the
     * device while HP is idle, and the next HP request waits behind all of it. */
    if (v->hp_inflight == 0)
        return v->be_inflight_us < l->dur_threshold_us ? ORION_GO : ORION_WAIT_DURATION;
    /* 1. Complementary profiles: a memory-bound BE kernel beside compute-bound HP kernels
     * or the reverse; anything unknown on either side is given the benefit of the doubt,
     * as in the paper. HP kernels of both kinds in flight leave no complement. */
    if (k->profile != ORION_UNKNOWN && v->hp_unknown == 0) {
        uint32_t same = k->profile == ORION_COMPUTE ? v->hp_compute : v->hp_memory;
        if (same > 0)
            return ORION_WAIT_PROFILE;
    }
    /* 2. SMs: the BE kernel's need plus what the HP kernels hold. */
    if ((uint64_t)k->sm_need + v->hp_sms > l->sm_threshold)
        return ORION_WAIT_SMS;
    /* 3. Duration: BE work already queued must be short enough that an HP kernel arriving
     * now waits little behind it. */
    if (v->be_inflight_us >= l->dur_threshold_us)
        return ORION_WAIT_DURATION;
    return ORION_GO;
}

const char *orion_verdict_name(orion_verdict v)
{
    switch (v) {
    case ORION_GO:
        return "go";
    case ORION_WAIT_PROFILE:
        return "profile";
    case ORION_WAIT_SMS:
        return "sms";
    case ORION_WAIT_DURATION:
        return "duration";
    }
    return "?";
}

const char *orion_profile_name(orion_profile p)
{
    return p == ORION_COMPUTE ? "compute" : p == ORION_MEMORY ? "memory" : "unknown";
}
