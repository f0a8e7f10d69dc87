/* test_instr.c: instruction streams. The checker accepts the streams of every generated plan
 * (GPT and T5, 1 to 8 stages, 1 and 2 replicas, every schedule) and rejects hand-broken ones:
 * a missing receive, a swapped order, a wrong shape, a wrong peer, a deadlock. The binary
 * form round-trips and refuses bad images; the JSON form names every instruction.
 *
 * Sections: generated plans, broken streams, serialisation. */
#include <string.h>

#include "dp_test.h"

/* ---- generated plans ---------------------------------------------------------------------- */

static void streams_of(const dp_result *r, int replica, dp_stream *st)
{
    for (int s = 0; s < r->stages; s++)
        cr_assert_eq(dp_instructions(r, replica, s, &st[s]), DP_OK, "%s", dp_last_error());
}

static void free_streams(dp_stream *st, int S)
{
    for (int s = 0; s < S; s++)
        dp_stream_free(&st[s]);
}

static dp_result plan(const char *model, int S, int D, unsigned sched, long tokens,
                      dp_cost_model **cmp)
{
    dp_cost_model *cm = dp_test_model(model);
    dp_samples s;
    cr_assert_eq(dp_mixture_batch(NULL, 0, tokens, (uint64_t)S * 31 + (uint64_t)D, &s, NULL),
                 DP_OK);
    dp_config cfg;
    dp_config_default(&cfg, cm);
    cfg.stages = S;
    cfg.dp_size = D;
    cfg.sched_mask = sched;
    cfg.param_factor = 2;
    dp_result r;
    cr_assert_eq(dp_plan(cm, &cfg, s.v, s.n, DP_METHOD_DYNAPIPE, &r), DP_OK, "%s", dp_last_error());
    dp_samples_free(&s);
    *cmp = cm;
    return r;
}

Test(check, accepts_every_generated_plan)
{
    static const char *models[] = {"gpt", "t5"};
    int checked = 0;
    for (int m = 0; m < 2; m++)
        for (int S = 1; S <= 8; S *= 2)
            for (int D = 1; D <= 2; D++)
                for (unsigned sched = 1; sched <= 2; sched++) {
                    dp_cost_model *cm;
                    dp_result r = plan(models[m], S, D, sched, 16384, &cm);
                    for (int d = 0; d < D; d++) {
                        dp_stream st[DP_MAX_STAGES];
                        streams_of(&r, d, st);
                        cr_assert_eq(dp_check_streams(st, S), DP_OK, "%s S %d D %d sched %u: %s",
                                     models[m], S, D, sched, dp_last_error());
                        free_streams(st, S);
                        checked++;
                    }
                    dp_result_free(&r);
                    dp_cost_model_free(cm);
                }
    cr_assert_eq(checked, 2 * 4 * 3 * 2);
}

/* ---- broken streams ------------------------------------------------------------------------- */

static dp_cost_model *cm4;
static dp_result r4;
static dp_stream st4[4];

static void setup4(void)
{
    r4 = plan("t5", 4, 1, 3, 16384, &cm4);
    streams_of(&r4, 0, st4);
    cr_assert_eq(dp_check_streams(st4, 4), DP_OK, "%s", dp_last_error());
    cr_assert_geq(r4.n_mb, 3);
}

static void teardown4(void)
{
    free_streams(st4, 4);
    dp_result_free(&r4);
    dp_cost_model_free(cm4);
}

static size_t find(const dp_stream *s, dp_opcode op, int mb)
{
    for (size_t i = 0; i < s->n; i++)
        if (s->v[i].op == op && s->v[i].mb == mb)
            return i;
    cr_assert_fail("no %s of micro-batch %d", dp_opcode_name(op), mb);
    return 0;
}

static void drop(dp_stream *s, size_t i)
{
    memmove(&s->v[i], &s->v[i + 1], (s->n - i - 1) * sizeof *s->v);
    s->n--;
}

static void rejected(const char *needle)
{
    dp_status st = dp_check_streams(st4, 4);
    cr_assert_eq(st, DP_ECHECK, "accepted a broken stream (%s)", dp_status_name(st));
    cr_assert(strstr(dp_last_error(), needle), "message '%s' lacks '%s'", dp_last_error(), needle);
}

Test(check, rejects_a_missing_receive, .init = setup4, .fini = teardown4)
{
    drop(&st4[2], find(&st4[2], DP_I_RECV_ACT_FINISH, 1));
    drop(&st4[2], find(&st4[2], DP_I_RECV_ACT_START, 1));
    rejected("Forward of micro-batch 1 before its input");
}

Test(check, rejects_a_missing_gradient_receive, .init = setup4, .fini = teardown4)
{
    drop(&st4[1], find(&st4[1], DP_I_RECV_GRAD_FINISH, 0));
    drop(&st4[1], find(&st4[1], DP_I_RECV_GRAD_START, 0));
    rejected("Backward of micro-batch 0");
}

Test(check, rejects_a_swapped_order, .init = setup4, .fini = teardown4)
{
    /* Rank 1 runs micro-batches 0 and 1 the other way round (labels swapped on all of its
     * instructions, so its own rules and shapes hold): its receive order no longer matches
     * rank 0's sends. */
    dp_stream *s = &st4[1];
    for (size_t i = 0; i < s->n; i++)
        s->v[i].mb = s->v[i].mb == 0 ? 1 : s->v[i].mb == 1 ? 0 : s->v[i].mb;
    rejected("the orders differ");
}

Test(check, rejects_a_wrong_shape, .init = setup4, .fini = teardown4)
{
    size_t a = find(&st4[3], DP_I_RECV_ACT_START, 2), b = find(&st4[3], DP_I_RECV_ACT_FINISH, 2);
    st4[3].v[a].shape[1] += 8;
    st4[3].v[b].shape[1] += 8;
    rejected("wrong shape");
}

Test(check, rejects_a_wrong_shape_on_one_side, .init = setup4, .fini = teardown4)
{
    st4[0].v[find(&st4[0], DP_I_FORWARD, 0)].shape[0] += 1;
    rejected("wrong shape");
}

Test(check, rejects_a_wrong_peer, .init = setup4, .fini = teardown4)
{
    st4[1].v[find(&st4[1], DP_I_SEND_ACT_START, 0)].peer = 3;
    rejected("wrong peer");
}

Test(check, rejects_a_deadlock)
{
    int32_t sh[4] = {1, 16, 16, 8}, ids[4] = {1, 16, 16, 1};
    dp_instr r0[] = {
        {DP_I_LOAD_INPUT, 0, -1, {0}},      {DP_I_RECV_GRAD_START, 0, 1, {0}},
        {DP_I_RECV_GRAD_FINISH, 0, 1, {0}}, {DP_I_FORWARD, 0, -1, {0}},
        {DP_I_SEND_ACT_START, 0, 1, {0}},   {DP_I_BACKWARD, 0, -1, {0}},
        {DP_I_SEND_ACT_FINISH, 0, 1, {0}},  {DP_I_FREE_BUFFER, 0, -1, {0}},
    };
    dp_instr r1[] = {
        {DP_I_RECV_ACT_START, 0, 0, {0}},  {DP_I_RECV_ACT_FINISH, 0, 0, {0}},
        {DP_I_FORWARD, 0, -1, {0}},        {DP_I_BACKWARD, 0, -1, {0}},
        {DP_I_SEND_GRAD_START, 0, 0, {0}}, {DP_I_SEND_GRAD_FINISH, 0, 0, {0}},
        {DP_I_FREE_BUFFER, 0, -1, {0}},
    };
    for (size_t i = 0; i < 8; i++)
        memcpy(r0[i].shape, r0[i].op == DP_I_LOAD_INPUT ? ids : sh, sizeof sh);
    for (size_t i = 0; i < 7; i++)
        memcpy(r1[i].shape, sh, sizeof sh);
    dp_stream st[2] = {{0, 2, r0, 8}, {1, 2, r1, 7}};
    cr_assert_eq(dp_check_streams(st, 2), DP_ECHECK);
    cr_assert(strstr(dp_last_error(), "deadlock"), "%s", dp_last_error());
    /* The same with the gradient receive after the forward's send: accepted. */
    dp_instr fixed[8] = {r0[0], r0[3], r0[4], r0[1], r0[2], r0[5], r0[6], r0[7]};
    st[0].v = fixed;
    cr_assert_eq(dp_check_streams(st, 2), DP_OK, "%s", dp_last_error());
}

/* ---- serialisation -------------------------------------------------------------------------- */

Test(serial, binary_round_trip_and_json, .init = setup4, .fini = teardown4)
{
    for (int s = 0; s < 4; s++) {
        uint8_t *buf;
        size_t len;
        cr_assert_eq(dp_stream_encode(&st4[s], &buf, &len), DP_OK);
        cr_assert_eq(len, 20 + 25 * st4[s].n);
        dp_stream back;
        cr_assert_eq(dp_stream_decode(buf, len, &back), DP_OK, "%s", dp_last_error());
        cr_assert_eq(back.n, st4[s].n);
        cr_assert_eq(back.rank, s);
        cr_assert_eq(back.stages, 4);
        for (size_t i = 0; i < back.n; i++) {
            const dp_instr *a = &back.v[i], *b = &st4[s].v[i];
            cr_assert(a->op == b->op && a->mb == b->mb && a->peer == b->peer &&
                          memcmp(a->shape, b->shape, sizeof a->shape) == 0,
                      "rank %d instruction %zu differs after the round trip", s, i);
        }
        /* Cut or corrupted images are refused. */
        cr_assert_eq(dp_stream_decode(buf, len - 1, &back), DP_EFORMAT);
        buf[20] = 200;
        cr_assert_eq(dp_stream_decode(buf, len, &back), DP_EFORMAT);
        buf[0] = 'X';
        cr_assert_eq(dp_stream_decode(buf, len, &back), DP_EFORMAT);
        free(buf);
        dp_stream_free(&back);
    }
    char *text;
    size_t tl;
    FILE *f = open_memstream(&text, &tl);
    cr_assert_eq(dp_stream_json(&st4[1], f), DP_OK);
    fclose(f);
    cr_assert(strstr(text, "{\"rank\":1,\"stages\":4,\"instructions\":["));
    cr_assert(strstr(text, "\"op\":\"RecvActivationStart\",\"mb\":0,\"peer\":0,\"shape\":["));
    size_t count = 0;
    for (const char *p = text; (p = strstr(p, "\"op\":")) != NULL; p++)
        count++;
    cr_assert_eq(count, st4[1].n);
    free(text);
}
