/* The local communicator (parallel/comm_local.c) run by p = 1..4 threads,
 * over host memory (comm_local_create) and over a mock of another memory
 * (comm_local_create_on), as p shards on one GPU use it.
 *
 * The mock models a GPU stream per rank: sum and copy are queued on the
 * calling rank's context and happen only when that rank calls sync, and the
 * test's own "compute" (filling the buffer a collective reads) is queued the
 * same way. So a collective that reads another rank's buffer before that rank
 * synced, or lets a rank overwrite a buffer another rank has not finished
 * reading, reads stale data; the mock also says so at once: every queued
 * operation is checked against the work other ranks have queued and not yet
 * synced. It also checks that each hook gets the calling rank's context, that
 * nothing is released while queued work still uses it, and that every alloc
 * is released.
 *
 * What is asserted: allreduce sums float32 in rank order 0..p-1 (the bits of
 * that sum, the same on every rank); allgather puts the blocks in rank order;
 * reduce_scatter gives rank r the rank-order sum of block r; several rounds in
 * a row (buffers reused); a hook's error reaches every rank and leaves none
 * waiting. Threads never assert (a failing thread would leave the others at a
 * barrier): they record what went wrong and the test asserts after joining. */
#include <math.h>
#include <pthread.h>
#include <string.h>
#include <unistd.h>

#include "comm.h"
#include "testutil.h"

#define MAX_RANKS 4
#define ROUNDS 3

/* ------------------------------------------------------- what went wrong */

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER; /* the mock's state and the failures */
static int failures;
static char first_failure[512];

static void failf(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    pthread_mutex_lock(&lock);
    if (failures++ == 0) vsnprintf(first_failure, sizeof first_failure, fmt, ap);
    pthread_mutex_unlock(&lock);
    va_end(ap);
}
/* called with the lock held */
static void failf_locked(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    if (failures++ == 0) vsnprintf(first_failure, sizeof first_failure, fmt, ap);
    va_end(ap);
}

static void reset_failures(void) { failures = 0, first_failure[0] = '\0'; }
static void assert_no_failures(void) {
    if (failures) fail_msg("%d problem%s; the first: %s", failures, failures == 1 ? "" : "s", first_failure);
}

/* ------------------------------------------------------------- the mock */

typedef enum { OP_FILL, OP_SUM, OP_COPY } op_kind;
typedef struct {
    op_kind kind;
    void *dst;
    size_t dst_bytes;
    const void *src[MAX_RANKS]; /* FILL: its own copy of the data; COPY: one; SUM: every rank's */
    size_t src_bytes;           /* bytes read from each src */
    int nsrc;
    size_t n; /* SUM: values */
    comm_dtype t;
    void *owned; /* FILL's data */
} op;

typedef struct {
    int rank;
    op queue[64];
    int queued;
    int syncs, allocs, releases;
    int used; /* sum or copy ever called */
} mock_ctx;

static mock_ctx ctxs[MAX_RANKS];
static _Thread_local mock_ctx *self; /* the calling rank's context */

static int overlap(const void *a, size_t na, const void *b, size_t nb) {
    const char *x = a, *y = b;
    return na && nb && x < y + nb && y < x + na;
}

/* A new op of ctx against what the other ranks have queued and not synced:
 * what it reads must not be written by their pending work (the writer did not
 * sync before the barrier), and what it writes must not be read or written by
 * their pending work (the reader did not sync before the barrier that lets
 * the owner reuse it). Lock held. */
static void check_against_others(const mock_ctx *me, const op *o) {
    for (int r = 0; r < MAX_RANKS; r++) {
        const mock_ctx *other = &ctxs[r];
        if (other == me) continue;
        for (int q = 0; q < other->queued; q++) {
            const op *p = &other->queue[q];
            for (int s = 0; s < o->nsrc && o->kind != OP_FILL; s++)
                if (overlap(o->src[s], o->src_bytes, p->dst, p->dst_bytes))
                    failf_locked("rank %d reads what rank %d wrote and has not synced (no sync before the barrier)",
                                 me->rank, other->rank);
            if (overlap(o->dst, o->dst_bytes, p->dst, p->dst_bytes))
                failf_locked("rank %d writes what rank %d's unsynced work writes", me->rank, other->rank);
            for (int s = 0; s < p->nsrc && p->kind != OP_FILL; s++)
                if (overlap(o->dst, o->dst_bytes, p->src[s], p->src_bytes))
                    failf_locked("rank %d overwrites what rank %d still reads (no sync before the barrier)", me->rank,
                                 other->rank);
        }
    }
}

static void enqueue(mock_ctx *m, const op *o) {
    pthread_mutex_lock(&lock);
    check_against_others(m, o);
    if (m->queued == (int)(sizeof m->queue / sizeof m->queue[0]))
        failf_locked("rank %d: more than %d operations queued without a sync", m->rank, m->queued);
    else
        m->queue[m->queued++] = *o;
    pthread_mutex_unlock(&lock);
}

static void run_op(const op *o) {
    switch (o->kind) {
    case OP_FILL: memcpy(o->dst, o->owned, o->dst_bytes), free(o->owned); break;
    case OP_COPY: memmove(o->dst, o->src[0], o->dst_bytes); break;
    case OP_SUM:
        if (o->t == COMM_F32) {
            float *out = o->dst;
            for (size_t i = 0; i < o->n; i++) out[i] = ((const float *)o->src[0])[i];
            for (int r = 1; r < o->nsrc; r++)
                for (size_t i = 0; i < o->n; i++) out[i] += ((const float *)o->src[r])[i];
        } else {
            double *out = o->dst;
            for (size_t i = 0; i < o->n; i++) out[i] = ((const double *)o->src[0])[i];
            for (int r = 1; r < o->nsrc; r++)
                for (size_t i = 0; i < o->n; i++) out[i] += ((const double *)o->src[r])[i];
        }
        break;
    }
}

static mock_ctx *checked(void *ctx, const char *hook) {
    mock_ctx *m = ctx;
    if (m != self)
        failf("%s: called by rank %d with rank %d's context", hook, self ? self->rank : -1, m ? m->rank : -1);
    return m;
}

static int mock_sum(void *ctx, void *out, const void *const *slots, int size, size_t offset, size_t n, comm_dtype t) {
    mock_ctx *m = checked(ctx, "sum");
    m->used = 1;
    if (t != COMM_F32 && t != COMM_F64) return -1; /* as the GPU's sums only some types */
    if (size > MAX_RANKS) return failf("sum: %d slots", size), -1;
    const size_t es = comm_dtype_size(t);
    op o = {.kind = OP_SUM, .dst = out, .dst_bytes = n * es, .src_bytes = n * es, .nsrc = size, .n = n, .t = t};
    for (int r = 0; r < size; r++) o.src[r] = (const char *)slots[r] + offset * es;
    enqueue(m, &o);
    return 0;
}

static int mock_copy(void *ctx, void *dst, const void *src, size_t bytes) {
    mock_ctx *m = checked(ctx, "copy");
    m->used = 1;
    op o = {.kind = OP_COPY, .dst = dst, .dst_bytes = bytes, .src = {src}, .src_bytes = bytes, .nsrc = 1};
    enqueue(m, &o);
    return 0;
}

static void *mock_alloc(void *ctx, size_t bytes) {
    mock_ctx *m = checked(ctx, "alloc");
    m->allocs++;
    return malloc(bytes + 1);
}

static void mock_release(void *ctx, void *p) {
    mock_ctx *m = checked(ctx, "release");
    m->releases++;
    pthread_mutex_lock(&lock);
    for (int r = 0; r < MAX_RANKS; r++)
        for (int q = 0; q < ctxs[r].queued; q++) {
            const op *o = &ctxs[r].queue[q];
            int uses = o->dst == p;
            for (int s = 0; s < o->nsrc && o->kind != OP_FILL; s++) uses |= o->src[s] == p;
            if (uses) failf_locked("rank %d released a buffer rank %d's queued work still uses", m->rank, r);
        }
    pthread_mutex_unlock(&lock);
    free(p);
}

static int mock_sync(void *ctx) {
    mock_ctx *m = checked(ctx, "sync");
    pthread_mutex_lock(&lock);
    for (int q = 0; q < m->queued; q++) run_op(&m->queue[q]);
    m->queued = 0;
    m->syncs++;
    pthread_mutex_unlock(&lock);
    return 0;
}

static const comm_local_memory mock_memory = {mock_sum, mock_copy, mock_alloc, mock_release, mock_sync};

/* The test's own work on a rank's "stream": dst = src, queued. */
static void queue_fill(mock_ctx *m, void *dst, const void *src, size_t bytes) {
    op o = {.kind = OP_FILL, .dst = dst, .dst_bytes = bytes, .owned = malloc(bytes ? bytes : 1)};
    memcpy(o.owned, src, bytes);
    enqueue(m, &o);
}

/* -------------------------------------------------------------- the runs */

typedef enum { ALLREDUCE, ALLGATHER, REDUCE_SCATTER, FAILING_SUM } collective;
typedef struct {
    int p, mock;
    collective what;
    tpmlp_comm comms[MAX_RANKS];
    size_t n;
    float *in[ROUNDS][MAX_RANKS]; /* each rank's input of each round */
    float *out[ROUNDS][MAX_RANKS];
    int rc[ROUNDS][MAX_RANKS];
} job;
typedef struct {
    job *j;
    int rank;
} rank_arg;

/* values of many magnitudes, so that the order of a sum shows in its bits */
static float value(unsigned long long *s) {
    *s ^= *s << 13, *s ^= *s >> 7, *s ^= *s << 17;
    const double u = (double)(*s >> 11) / 9007199254740992.0 - 0.5;
    return (float)ldexp(u, (int)(*s % 31) - 10);
}

static void *rank_main(void *arg) {
    rank_arg *a = arg;
    job *j = a->j;
    const int r = a->rank, p = j->p;
    tpmlp_comm *c = &j->comms[r];
    if (c->rank != r || c->size != p) failf("rank %d: communicator says rank %d of %d", r, c->rank, c->size);
    self = j->mock ? &ctxs[r] : NULL;
    const size_t n = j->n, in_n = j->what == REDUCE_SCATTER ? p * n : n;
    const size_t out_n = j->what == ALLGATHER ? p * n : n;
    float *send = malloc(sizeof(float) * in_n), *recv = malloc(sizeof(float) * out_n);
    for (int round = 0; round < ROUNDS; round++) {
        /* stale contents (NaN) unless the collective's reads and writes happen in order */
        for (size_t i = 0; i < in_n; i++) send[i] = NAN;
        for (size_t i = 0; i < out_n; i++) recv[i] = NAN;
        if (j->mock)
            queue_fill(self, send, j->in[round][r], sizeof(float) * in_n);
        else
            memcpy(send, j->in[round][r], sizeof(float) * in_n);
        int rc;
        switch (j->what) {
        case ALLREDUCE: rc = c->ops->allreduce(c, send, n, COMM_F32); break;
        case ALLGATHER: rc = c->ops->allgather(c, send, recv, n, COMM_F32); break;
        case REDUCE_SCATTER: rc = c->ops->reduce_scatter(c, send, recv, n, COMM_F32); break;
        default: rc = c->ops->allreduce(c, send, n, COMM_BF16); break; /* no sum for it: an error on every rank */
        }
        j->rc[round][r] = rc;
        if (j->mock) mock_sync(self); /* the caller's own sync before it reads (a download) */
        memcpy(j->out[round][r], j->what == ALLREDUCE || j->what == FAILING_SUM ? send : recv, sizeof(float) * out_n);
    }
    free(send), free(recv);
    return NULL;
}

/* Runs j->what by j->p threads for ROUNDS rounds; inputs random. */
static void run(job *j) {
    const int p = j->p;
    const size_t in_n = j->what == REDUCE_SCATTER ? p * j->n : j->n, out_n = j->what == ALLGATHER ? p * j->n : j->n;
    unsigned long long s = test_seed() * 2654435761ULL + (unsigned long long)(p * 16 + (int)j->what) + 1;
    for (int round = 0; round < ROUNDS; round++)
        for (int r = 0; r < p; r++) {
            j->in[round][r] = malloc(sizeof(float) * in_n);
            j->out[round][r] = malloc(sizeof(float) * out_n);
            for (size_t i = 0; i < in_n; i++) j->in[round][r][i] = value(&s);
        }
    reset_failures();
    memset(ctxs, 0, sizeof ctxs);
    void *ctx[MAX_RANKS];
    for (int r = 0; r < MAX_RANKS; r++) ctxs[r].rank = r, ctx[r] = &ctxs[r];
    if (j->mock)
        assert_int_equal(comm_local_create_on(j->comms, p, &mock_memory, ctx), 0);
    else
        assert_int_equal(comm_local_create(j->comms, p), 0);
    pthread_t th[MAX_RANKS];
    rank_arg args[MAX_RANKS];
    for (int r = 0; r < p; r++) {
        args[r] = (rank_arg){j, r};
        assert_int_equal(pthread_create(&th[r], NULL, rank_main, &args[r]), 0);
    }
    for (int r = 0; r < p; r++) pthread_join(th[r], NULL);
    for (int r = 0; r < p; r++) j->comms[r].ops->destroy(&j->comms[r]);
    if (j->mock)
        for (int r = 0; r < p; r++) {
            if (ctxs[r].allocs != ctxs[r].releases)
                failf("rank %d: %d allocs, %d releases", r, ctxs[r].allocs, ctxs[r].releases);
            if (ctxs[r].queued) failf("rank %d: %d operations queued and never synced", r, ctxs[r].queued);
            if (p > 1 && j->what != FAILING_SUM && !ctxs[r].used)
                failf("rank %d: the collective never used the memory's hooks", r);
        }
}

static void free_job(job *j) {
    for (int round = 0; round < ROUNDS; round++)
        for (int r = 0; r < j->p; r++) free(j->in[round][r]), free(j->out[round][r]);
}

/* rank r's value i summed over ranks in rank order, in float32 */
static float rank_order_sum(const job *j, int round, size_t i) {
    float e = j->in[round][0][i];
    for (int r = 1; r < j->p; r++) e += j->in[round][r][i];
    return e;
}
static float reverse_order_sum(const job *j, int round, size_t i) {
    float e = j->in[round][j->p - 1][i];
    for (int r = j->p - 2; r >= 0; r--) e += j->in[round][r][i];
    return e;
}

static int same_bits(float a, float b) { return memcmp(&a, &b, sizeof a) == 0; }

/* state: p · 2 + mock */
static void allreduce_rank_order(void **state) {
    job j = {.p = STATE_INT(state) / 2, .mock = STATE_INT(state) % 2, .what = ALLREDUCE, .n = 1000};
    run(&j);
    assert_no_failures();
    int order_shows = 0;
    for (int round = 0; round < ROUNDS; round++)
        for (int r = 0; r < j.p; r++) {
            assert_int_equal(j.rc[round][r], 0);
            for (size_t i = 0; i < j.n; i++) {
                const float want = rank_order_sum(&j, round, i);
                if (!same_bits(j.out[round][r][i], want))
                    fail_msg("round %d rank %d [%zu]: %.9g, the rank-order sum is %.9g", round, r, i,
                             j.out[round][r][i], want);
                order_shows |= !same_bits(want, reverse_order_sum(&j, round, i));
            }
            if (memcmp(j.out[round][r], j.out[round][0], sizeof(float) * j.n) != 0)
                fail_msg("round %d: rank %d's bits differ from rank 0's", round, r);
        }
    if (j.p >= 3) assert_true(order_shows); /* the data tells rank order from another */
    free_job(&j);
}

static void allgather_blocks(void **state) {
    job j = {.p = STATE_INT(state) / 2, .mock = STATE_INT(state) % 2, .what = ALLGATHER, .n = 257};
    run(&j);
    assert_no_failures();
    for (int round = 0; round < ROUNDS; round++)
        for (int r = 0; r < j.p; r++) {
            assert_int_equal(j.rc[round][r], 0);
            for (int q = 0; q < j.p; q++)
                if (memcmp(j.out[round][r] + (size_t)q * j.n, j.in[round][q], sizeof(float) * j.n) != 0)
                    fail_msg("round %d: rank %d's block %d is not rank %d's send", round, r, q, q);
        }
    free_job(&j);
}

static void reduce_scatter_blocks(void **state) {
    job j = {.p = STATE_INT(state) / 2, .mock = STATE_INT(state) % 2, .what = REDUCE_SCATTER, .n = 129};
    run(&j);
    assert_no_failures();
    for (int round = 0; round < ROUNDS; round++)
        for (int r = 0; r < j.p; r++) {
            assert_int_equal(j.rc[round][r], 0);
            for (size_t i = 0; i < j.n; i++) {
                float want = j.in[round][0][(size_t)r * j.n + i];
                for (int q = 1; q < j.p; q++) want += j.in[round][q][(size_t)r * j.n + i];
                if (!same_bits(j.out[round][r][i], want))
                    fail_msg("round %d rank %d [%zu]: %.9g, the rank-order sum of block %d is %.9g", round, r, i,
                             j.out[round][r][i], want, r);
            }
        }
    free_job(&j);
}

/* A sum the memory cannot do (bf16: neither host memory nor the mock sums it):
 * -1 on every rank, every round, and no rank left at a barrier. */
static void failing_sum_reaches_every_rank(void **state) {
    job j = {.p = STATE_INT(state) / 2, .mock = STATE_INT(state) % 2, .what = FAILING_SUM, .n = 64};
    run(&j);
    assert_no_failures();
    for (int round = 0; round < ROUNDS; round++)
        for (int r = 0; r < j.p; r++) assert_int_equal(j.rc[round][r], j.p == 1 ? 0 : -1); /* p = 1: nothing to sum */
    free_job(&j);
}

#define FOUR(fn, mem, mock)                                                                                            \
    NAMED_TEST(fn, mem " p=1", 1 * 2 + (mock)), NAMED_TEST(fn, mem " p=2", 2 * 2 + (mock)),                            \
        NAMED_TEST(fn, mem " p=3", 3 * 2 + (mock)), NAMED_TEST(fn, mem " p=4", 4 * 2 + (mock))

int main(void) {
    test_seed();
    alarm(120); /* a rank left at a barrier: fail, not hang */
    const struct CMUnitTest tests[] = {
        FOUR(allreduce_rank_order, "host", 0),
        FOUR(allreduce_rank_order, "mock", 1),
        FOUR(allgather_blocks, "host", 0),
        FOUR(allgather_blocks, "mock", 1),
        FOUR(reduce_scatter_blocks, "host", 0),
        FOUR(reduce_scatter_blocks, "mock", 1),
        FOUR(failing_sum_reaches_every_rank, "host", 0),
        FOUR(failing_sum_reaches_every_rank, "mock", 1),
    };
    return cmocka_run_group_tests_name("comm local", tests, NULL, NULL);
}
