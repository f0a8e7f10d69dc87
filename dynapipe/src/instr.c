/* instr.c: per-rank instruction streams from a plan's schedule, their binary and JSON forms,
 * and the checker that proves a set of streams consistent and free of deadlock.
 *
 * Sections: building a stream, binary form, JSON form, the checker (per-rank rules, send and
 * receive matching, a rendezvous execution of all ranks). */
#include <stdlib.h>
#include <string.h>

#include "internal.h"

const char *dp_opcode_name(dp_opcode op)
{
    static const char *const n[] = {
        "LoadInput",
        "Forward",
        "Backward",
        "SendActivationStart",
        "SendActivationFinish",
        "RecvActivationStart",
        "RecvActivationFinish",
        "SendGradStart",
        "SendGradFinish",
        "RecvGradStart",
        "RecvGradFinish",
        "FreeBuffer",
    };
    return (unsigned)op < DP_I_COUNT ? n[op] : "?";
}

void dp_stream_free(dp_stream *s)
{
    free(s->v);
    memset(s, 0, sizeof *s);
}

/* ---- building a stream ------------------------------------------------------------------ */

typedef struct builder {
    dp_stream *s;
    size_t cap;
    dp_status st;
} builder;

static void emit(builder *b, dp_opcode op, int mb, int peer, const int32_t shape[4])
{
    if (b->st != DP_OK)
        return;
    if (b->s->n == b->cap) {
        size_t cap = b->cap ? b->cap * 2 : 64;
        dp_instr *v = realloc(b->s->v, cap * sizeof *v);
        if (!v) {
            b->st = dp_fail(DP_ENOMEM, "out of memory building instructions");
            return;
        }
        b->s->v = v;
        b->cap = cap;
    }
    dp_instr *i = &b->s->v[b->s->n++];
    i->op = op;
    i->mb = mb;
    i->peer = peer;
    memcpy(i->shape, shape, sizeof i->shape);
}

static void forward_ops(builder *b, int mb, int st, int S, const int32_t act[4],
                        const int32_t ids[4])
{
    if (st == 0) {
        emit(b, DP_I_LOAD_INPUT, mb, -1, ids);
    } else {
        emit(b, DP_I_RECV_ACT_START, mb, st - 1, act);
        emit(b, DP_I_RECV_ACT_FINISH, mb, st - 1, act);
    }
    emit(b, DP_I_FORWARD, mb, -1, act);
    if (st < S - 1)
        emit(b, DP_I_SEND_ACT_START, mb, st + 1, act);
}

static void backward_ops(builder *b, int mb, int st, int S, const int32_t act[4])
{
    if (st < S - 1) {
        emit(b, DP_I_RECV_GRAD_START, mb, st + 1, act);
        emit(b, DP_I_RECV_GRAD_FINISH, mb, st + 1, act);
    }
    emit(b, DP_I_BACKWARD, mb, -1, act);
    if (st > 0)
        emit(b, DP_I_SEND_GRAD_START, mb, st - 1, act);
    if (st < S - 1) /* the next stage has its activation: it sent the gradient back */
        emit(b, DP_I_SEND_ACT_FINISH, mb, st + 1, act);
    emit(b, DP_I_FREE_BUFFER, mb, -1, act);
}

dp_status dp_instructions(const dp_result *r, int replica, int stage, dp_stream *out)
{
    memset(out, 0, sizeof *out);
    if (replica < 0 || replica >= r->replicas || stage < 0 || stage >= r->stages)
        return dp_fail(DP_EINVAL,
                       "--rank %d / --replica %d: the plan has %d stages and %d replicas", stage,
                       replica, r->stages, r->replicas);
    out->rank = stage;
    out->stages = r->stages;
    builder b = {out, 0, DP_OK};
    size_t m = r->replica_n[replica];
    if (m == 0)
        return dp_done(DP_OK);
    const dp_schedule *sc = &r->sched[replica];
    for (size_t k = 0; k < 2 * m; k++) {
        const dp_op *o = &sc->ops[stage][k];
        const dp_microbatch *mb = &r->mb[r->replica_mb[replica][o->mb]];
        int32_t act[4] = {mb->mbs, mb->padded_input, mb->padded_target, r->hidden};
        int32_t ids[4] = {mb->mbs, mb->padded_input, mb->padded_target, 1};
        if (o->backward)
            backward_ops(&b, o->mb, stage, r->stages, act);
        else
            forward_ops(&b, o->mb, stage, r->stages, act, ids);
    }
    /* Gradient sends finish last, in the order they were posted. */
    size_t n = out->n;
    for (size_t i = 0; i < n && b.st == DP_OK; i++)
        if (out->v[i].op == DP_I_SEND_GRAD_START) {
            dp_instr g = out->v[i];
            emit(&b, DP_I_SEND_GRAD_FINISH, g.mb, g.peer, g.shape);
        }
    if (b.st != DP_OK)
        dp_stream_free(out);
    return dp_done(b.st);
}

/* ---- binary form --------------------------------------------------------------------------- */

#define DP_STREAM_HDR   20
#define DP_STREAM_INSTR 25

static void put32(uint8_t *p, uint32_t v)
{
    for (int k = 0; k < 4; k++)
        p[k] = (uint8_t)(v >> (8 * k));
}

static uint32_t get32(const uint8_t *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

dp_status dp_stream_encode(const dp_stream *s, uint8_t **buf, size_t *len)
{
    *buf = NULL;
    *len = 0;
    if (s->n > (SIZE_MAX - DP_STREAM_HDR) / DP_STREAM_INSTR || s->n > UINT32_MAX)
        return dp_fail(DP_EINVAL, "stream too long to encode");
    size_t n = DP_STREAM_HDR + s->n * DP_STREAM_INSTR;
    uint8_t *b = malloc(n);
    if (!b)
        return dp_fail(DP_ENOMEM, "out of memory encoding instructions");
    memcpy(b, "DPIS", 4);
    b[4] = 1; /* version */
    b[5] = b[6] = b[7] = 0;
    put32(b + 8, (uint32_t)s->rank);
    put32(b + 12, (uint32_t)s->stages);
    put32(b + 16, (uint32_t)s->n);
    for (size_t i = 0; i < s->n; i++) {
        uint8_t *p = b + DP_STREAM_HDR + i * DP_STREAM_INSTR;
        p[0] = (uint8_t)s->v[i].op;
        put32(p + 1, (uint32_t)s->v[i].mb);
        put32(p + 5, (uint32_t)s->v[i].peer);
        for (int k = 0; k < 4; k++)
            put32(p + 9 + 4 * (size_t)k, (uint32_t)s->v[i].shape[k]);
    }
    *buf = b;
    *len = n;
    return dp_done(DP_OK);
}

dp_status dp_stream_decode(const uint8_t *buf, size_t len, dp_stream *s)
{
    memset(s, 0, sizeof *s);
    if (len < DP_STREAM_HDR || memcmp(buf, "DPIS", 4) != 0)
        return dp_fail(DP_EFORMAT, "instruction stream: no 'DPIS' header (%zu bytes)", len);
    if (buf[4] != 1 || buf[5] || buf[6] || buf[7])
        return dp_fail(DP_EFORMAT, "instruction stream: version %u not supported", buf[4]);
    uint32_t n = get32(buf + 16);
    if ((len - DP_STREAM_HDR) / DP_STREAM_INSTR != n ||
        (len - DP_STREAM_HDR) % DP_STREAM_INSTR != 0)
        return dp_fail(DP_EFORMAT, "instruction stream: %u instructions need %zu bytes, have %zu",
                       n, (size_t)DP_STREAM_HDR + (size_t)n * DP_STREAM_INSTR, len);
    s->rank = (int32_t)get32(buf + 8);
    s->stages = (int32_t)get32(buf + 12);
    s->v = malloc((n ? n : 1) * sizeof *s->v);
    if (!s->v)
        return dp_fail(DP_ENOMEM, "out of memory decoding instructions");
    for (uint32_t i = 0; i < n; i++) {
        const uint8_t *p = buf + DP_STREAM_HDR + (size_t)i * DP_STREAM_INSTR;
        if (p[0] >= DP_I_COUNT) {
            dp_stream_free(s);
            return dp_fail(DP_EFORMAT, "instruction %u: unknown opcode %u", i, p[0]);
        }
        s->v[i].op = (dp_opcode)p[0];
        s->v[i].mb = (int32_t)get32(p + 1);
        s->v[i].peer = (int32_t)get32(p + 5);
        for (int k = 0; k < 4; k++)
            s->v[i].shape[k] = (int32_t)get32(p + 9 + 4 * (size_t)k);
    }
    s->n = n;
    return dp_done(DP_OK);
}

/* ---- JSON form ------------------------------------------------------------------------------ */

dp_status dp_stream_json(const dp_stream *s, FILE *f)
{
    fprintf(f, "{\"rank\":%d,\"stages\":%d,\"instructions\":[", s->rank, s->stages);
    for (size_t i = 0; i < s->n; i++) {
        const dp_instr *x = &s->v[i];
        fprintf(f, "%s\n{\"op\":\"%s\",\"mb\":%d,\"peer\":%d,\"shape\":[%d,%d,%d,%d]}",
                i ? "," : "", dp_opcode_name(x->op), x->mb, x->peer, x->shape[0], x->shape[1],
                x->shape[2], x->shape[3]);
    }
    fprintf(f, "]}\n");
    if (ferror(f))
        return dp_fail(DP_EIO, "writing the instruction stream failed");
    return dp_done(DP_OK);
}

/* ---- the checker ------------------------------------------------------------------------- */

#define DP_CHECK_MAX_MB (1 << 20)

enum {
    HAVE_INPUT = 1 << 0,
    RA_START = 1 << 1,
    FWD = 1 << 2,
    SA_START = 1 << 3,
    SA_DONE = 1 << 4,
    RG_START = 1 << 5,
    RG_DONE = 1 << 6,
    BWD = 1 << 7,
    SG_START = 1 << 8,
    SG_DONE = 1 << 9,
    FREED = 1 << 10,
    SEEN = 1 << 11,
};

typedef struct mb_state {
    unsigned flags;
    int32_t in_shape[4], ra_shape[4], fwd_shape[4], rg_shape[4];
} mb_state;

static bool same(const int32_t *a, const int32_t *b, int n)
{
    return memcmp(a, b, (size_t)n * sizeof *a) == 0;
}

#define BAD(...) dp_fail(DP_ECHECK, __VA_ARGS__)

/* One instruction against the rank's own rules. */
static dp_status rank_rule(const dp_instr *x, mb_state *m, int r, int S, size_t i)
{
    const char *op = dp_opcode_name(x->op);
    int up = r - 1, down = r + 1;
    bool peer_ok = true;
    switch (x->op) {
    case DP_I_LOAD_INPUT:
        if (r != 0 || (m->flags & HAVE_INPUT))
            return BAD(
                "rank %d instruction %zu: %s of micro-batch %d on a rank that receives its input, or twice",
                r, i, op, x->mb);
        m->flags |= HAVE_INPUT;
        memcpy(m->in_shape, x->shape, sizeof m->in_shape);
        return DP_OK;
    case DP_I_RECV_ACT_START:
        peer_ok = r > 0 && x->peer == up && !(m->flags & RA_START);
        m->flags |= RA_START;
        memcpy(m->ra_shape, x->shape, sizeof m->ra_shape);
        break;
    case DP_I_RECV_ACT_FINISH:
        if (!(m->flags & RA_START) || (m->flags & HAVE_INPUT) || x->peer != up)
            return BAD("rank %d instruction %zu: %s of micro-batch %d without its start", r, i, op,
                       x->mb);
        if (!same(x->shape, m->ra_shape, 4))
            return BAD("rank %d instruction %zu: %s of micro-batch %d: wrong shape", r, i, op,
                       x->mb);
        m->flags |= HAVE_INPUT;
        memcpy(m->in_shape, x->shape, sizeof m->in_shape);
        return DP_OK;
    case DP_I_FORWARD:
        if (!(m->flags & HAVE_INPUT) || (m->flags & FWD))
            return BAD(
                "rank %d instruction %zu: Forward of micro-batch %d before its input arrived (a missing or late receive), or twice",
                r, i, x->mb);
        if (!same(x->shape, m->in_shape, r == 0 ? 3 : 4))
            return BAD(
                "rank %d instruction %zu: Forward of micro-batch %d: wrong shape (input [%d,%d,%d,%d])",
                r, i, x->mb, m->in_shape[0], m->in_shape[1], m->in_shape[2], m->in_shape[3]);
        m->flags |= FWD;
        memcpy(m->fwd_shape, x->shape, sizeof m->fwd_shape);
        return DP_OK;
    case DP_I_SEND_ACT_START:
        peer_ok = r < S - 1 && x->peer == down && (m->flags & FWD) && !(m->flags & SA_START);
        m->flags |= SA_START;
        break;
    case DP_I_SEND_ACT_FINISH:
        peer_ok = x->peer == down && (m->flags & SA_START) && !(m->flags & SA_DONE);
        m->flags |= SA_DONE;
        break;
    case DP_I_RECV_GRAD_START:
        peer_ok = r < S - 1 && x->peer == down && !(m->flags & RG_START);
        m->flags |= RG_START;
        memcpy(m->rg_shape, x->shape, sizeof m->rg_shape);
        break;
    case DP_I_RECV_GRAD_FINISH:
        peer_ok = x->peer == down && (m->flags & RG_START) && !(m->flags & RG_DONE) &&
                  same(x->shape, m->rg_shape, 4);
        m->flags |= RG_DONE;
        break;
    case DP_I_BACKWARD:
        if (!(m->flags & FWD) || (m->flags & BWD) || (r < S - 1 && !(m->flags & RG_DONE)))
            return BAD(
                "rank %d instruction %zu: Backward of micro-batch %d before its forward or its gradient (a missing or late receive), or twice",
                r, i, x->mb);
        m->flags |= BWD;
        break;
    case DP_I_SEND_GRAD_START:
        peer_ok = r > 0 && x->peer == up && (m->flags & BWD) && !(m->flags & SG_START);
        m->flags |= SG_START;
        break;
    case DP_I_SEND_GRAD_FINISH:
        peer_ok = x->peer == up && (m->flags & SG_START) && !(m->flags & SG_DONE);
        m->flags |= SG_DONE;
        break;
    case DP_I_FREE_BUFFER:
        if (!(m->flags & BWD) || (m->flags & FREED) || (r < S - 1 && !(m->flags & SA_DONE)))
            return BAD(
                "rank %d instruction %zu: FreeBuffer of micro-batch %d before its backward or its activation send finished, or twice",
                r, i, x->mb);
        m->flags |= FREED;
        break;
    default:
        return BAD("rank %d instruction %zu: unknown opcode %d", r, i, (int)x->op);
    }
    if (!peer_ok)
        return BAD(
            "rank %d instruction %zu: %s of micro-batch %d: wrong peer %d, out of order or repeated",
            r, i, op, x->mb, x->peer);
    if (x->op != DP_I_RECV_ACT_START && x->op != DP_I_RECV_GRAD_START && (m->flags & FWD) &&
        !same(x->shape, m->fwd_shape, 4))
        return BAD("rank %d instruction %zu: %s of micro-batch %d: wrong shape", r, i, op, x->mb);
    return DP_OK;
}

static dp_status rank_end(const mb_state *m, int nmb, int r, int S)
{
    for (int j = 0; j < nmb; j++) {
        unsigned f = m[j].flags, want = SEEN | FWD | BWD | FREED;
        if (r < S - 1)
            want |= SA_START | SA_DONE | RG_START | RG_DONE;
        if (r > 0)
            want |= SG_START | SG_DONE;
        if ((f & SEEN) && (f & want) != want)
            return BAD(
                "rank %d: micro-batch %d is left unfinished (a missing forward, backward, send, receive or free)",
                r, j);
    }
    return DP_OK;
}

typedef struct channel_map {
    int32_t *peer_idx; /* per rank, per kind (0 act, 1 grad), per mb: the peer's matching
                          start, or -1 */
} channel_map;

static int32_t *slot(int32_t *base, int r, int kind, int mb, int nmb)
{
    return &base[((size_t)r * 2 + (size_t)kind) * (size_t)nmb + (size_t)mb];
}

/* The k-th send of a channel matches the k-th receive: same micro-batch and shape. */
static dp_status match_channel(const dp_stream *st, int a, int b, int kind, int nmb,
                               int32_t *send_pair, int32_t *recv_pair)
{
    dp_opcode so = kind ? DP_I_SEND_GRAD_START : DP_I_SEND_ACT_START;
    dp_opcode ro = kind ? DP_I_RECV_GRAD_START : DP_I_RECV_ACT_START;
    size_t i = 0, j = 0;
    for (;;) {
        while (i < st[a].n && !(st[a].v[i].op == so && st[a].v[i].peer == b))
            i++;
        while (j < st[b].n && !(st[b].v[j].op == ro && st[b].v[j].peer == a))
            j++;
        if (i == st[a].n && j == st[b].n)
            return DP_OK;
        if (i == st[a].n)
            return BAD(
                "rank %d instruction %zu: %s of micro-batch %d from rank %d has no matching send",
                b, j, dp_opcode_name(ro), st[b].v[j].mb, a);
        if (j == st[b].n)
            return BAD(
                "rank %d instruction %zu: %s of micro-batch %d to rank %d has no matching receive",
                a, i, dp_opcode_name(so), st[a].v[i].mb, b);
        const dp_instr *x = &st[a].v[i], *y = &st[b].v[j];
        if (x->mb != y->mb)
            return BAD(
                "rank %d instruction %zu sends micro-batch %d to rank %d, which receives micro-batch %d at its instruction %zu: the orders differ",
                a, i, x->mb, b, y->mb, j);
        if (!same(x->shape, y->shape, 4))
            return BAD(
                "rank %d instruction %zu sends micro-batch %d as [%d,%d,%d,%d]; rank %d receives it as [%d,%d,%d,%d]: wrong shape",
                a, i, x->mb, x->shape[0], x->shape[1], x->shape[2], x->shape[3], b, y->shape[0],
                y->shape[1], y->shape[2], y->shape[3]);
        *slot(send_pair, a, kind, x->mb, nmb) = (int32_t)j;
        *slot(recv_pair, b, kind, y->mb, nmb) = (int32_t)i;
        i++;
        j++;
    }
}

/* Run all ranks with rendezvous semantics until they finish or none can move. */
static dp_status rendezvous(const dp_stream *st, int S, int nmb, const int32_t *send_pair,
                            const int32_t *recv_pair, size_t *pc)
{
    for (;;) {
        bool moved = false, all = true;
        for (int r = 0; r < S; r++) {
            while (pc[r] < st[r].n) {
                const dp_instr *x = &st[r].v[pc[r]];
                int kind = x->op == DP_I_SEND_GRAD_FINISH || x->op == DP_I_RECV_GRAD_FINISH;
                if (x->op == DP_I_SEND_ACT_FINISH || x->op == DP_I_SEND_GRAD_FINISH) {
                    int32_t j = *slot((int32_t *)send_pair, r, kind, x->mb, nmb);
                    if (pc[x->peer] <= (size_t)j)
                        break; /* the receive is not posted yet */
                } else if (x->op == DP_I_RECV_ACT_FINISH || x->op == DP_I_RECV_GRAD_FINISH) {
                    int32_t j = *slot((int32_t *)recv_pair, r, kind, x->mb, nmb);
                    if (pc[x->peer] <= (size_t)j)
                        break; /* the send is not posted yet */
                }
                pc[r]++;
                moved = true;
            }
            all &= pc[r] == st[r].n;
        }
        if (all)
            return DP_OK;
        if (!moved) {
            for (int r = 0; r < S; r++)
                if (pc[r] < st[r].n)
                    return BAD(
                        "deadlock: rank %d waits at instruction %zu (%s of micro-batch %d) and no rank can move",
                        r, pc[r], dp_opcode_name(st[r].v[pc[r]].op), st[r].v[pc[r]].mb);
        }
    }
}

static dp_status check_ranks(const dp_stream *st, int S, int nmb, mb_state *m)
{
    for (int r = 0; r < S; r++) {
        if (st[r].rank != r || st[r].stages != S)
            return BAD("stream %d says rank %d of %d stages", r, st[r].rank, st[r].stages);
        memset(m, 0, (size_t)nmb * sizeof *m);
        for (size_t i = 0; i < st[r].n; i++) {
            const dp_instr *x = &st[r].v[i];
            m[x->mb].flags |= SEEN;
            dp_status s = rank_rule(x, &m[x->mb], r, S, i);
            if (s != DP_OK)
                return s;
        }
        dp_status s = rank_end(m, nmb, r, S);
        if (s != DP_OK)
            return s;
    }
    return DP_OK;
}

dp_status dp_check_streams(const dp_stream *st, int S)
{
    if (S < 1 || S > DP_MAX_STAGES)
        return BAD("%d stages", S);
    int nmb = 0;
    for (int r = 0; r < S; r++)
        for (size_t i = 0; i < st[r].n; i++) {
            const dp_instr *x = &st[r].v[i];
            if (x->mb < 0 || x->mb >= DP_CHECK_MAX_MB || (unsigned)x->op >= DP_I_COUNT ||
                x->peer < -1 || x->peer >= S)
                return BAD(
                    "rank %d instruction %zu: micro-batch %d, opcode %d or peer %d out of range", r,
                    i, x->mb, (int)x->op, x->peer);
            nmb = x->mb + 1 > nmb ? x->mb + 1 : nmb;
        }
    size_t slots = (size_t)S * 2 * (size_t)(nmb ? nmb : 1);
    mb_state *m = calloc((size_t)(nmb ? nmb : 1), sizeof *m);
    int32_t *sp = malloc(slots * sizeof *sp), *rp = malloc(slots * sizeof *rp);
    size_t *pc = calloc((size_t)S, sizeof *pc);
    if (!m || !sp || !rp || !pc) {
        free(m);
        free(sp);
        free(rp);
        free(pc);
        return dp_fail(DP_ENOMEM, "out of memory checking instructions");
    }
    for (size_t k = 0; k < slots; k++)
        sp[k] = rp[k] = -1;
    dp_status s = check_ranks(st, S, nmb, m);
    for (int r = 0; s == DP_OK && r + 1 < S; r++) {
        s = match_channel(st, r, r + 1, 0, nmb, sp, rp);
        if (s == DP_OK)
            s = match_channel(st, r + 1, r, 1, nmb, sp, rp);
    }
    if (s == DP_OK)
        s = rendezvous(st, S, nmb, sp, rp, pc);
    free(m);
    free(sp);
    free(rp);
    free(pc);
    return dp_done(s);
}
