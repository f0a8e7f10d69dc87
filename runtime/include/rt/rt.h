/* rt/rt.h: the shared runtime every component links (librt-common.a): one include for all. */
#ifndef RT_RT_H
#define RT_RT_H

#include "rt/crc32c.h"
#include "rt/env.h"
#include "rt/err.h"
#include "rt/fatal.h"
#include "rt/log.h"
#include "rt/net.h"
#include "rt/shm.h"
#include "rt/stats.h"

#endif
