/* internal.h: what the NCL client's files share beyond ncl/client.h (open and recovery). */
#ifndef NCL_INTERNAL_H
#define NCL_INTERNAL_H

#include "ncl/client.h"

/* One peer as seen by a one-shot procedure (open, recovery): its connection and its
 * answer to HELLO. */
typedef struct probe {
    ncl_stream *s;                      /* NULL when unreachable or dropped after an error */
    uint64_t epoch, start, next, owner; /* from HELLO; owner: see ncl_proto.h */
    char err[200];
} probe;

/* Connect to every peer, learn their epochs (a query), then raise the epoch on a majority:
 * the older incarnation is fenced. *owner: the highest log owner among the answers;
 * *dirty: a log of that owner still holds records. pr has cfg->peers.n entries. */
int ncl_fence(const ncl_config *cfg, probe *pr, uint64_t *epoch, uint64_t *owner, bool *dirty,
              rt_err *err);
/* RESET every connected probe to `at`; a majority must accept. */
int ncl_reset_all(const ncl_config *cfg, probe *pr, uint64_t epoch, uint64_t at, rt_err *err);
void ncl_probes_close(const ncl_config *cfg, probe *pr, int n);

#endif
