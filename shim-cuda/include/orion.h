/* orion.h: what liborion.so exports besides the CUDA driver entry points it wraps.
 *
 * Frameworks that run a latency-critical and a best-effort client as threads of one process
 * may mark threads instead of (or besides) using high-priority streams:
 *   orion_set_thread_priority(ORION_HP);   // this thread's launches are high-priority
 *   orion_set_thread_priority(ORION_BE);   // best-effort
 *   orion_set_thread_priority(ORION_UNSET); // back to the stream / process rule
 * Look it up with dlsym(RTLD_DEFAULT, "orion_set_thread_priority") to run without the shim.
 */
#ifndef ORION_H
#define ORION_H

#define ORION_UNSET (-1)
#define ORION_BE    0
#define ORION_HP    1

/* 0, or -1 for a value other than the three above. */
int orion_set_thread_priority(int priority);

#endif
