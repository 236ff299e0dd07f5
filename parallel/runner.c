#include "config.h"

#include "runner.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "safetensors.h"
#include "sp_mlp.h"
#include "tp_mlp.h"
#include "util.h"

int tp_run_check_p(int p, int N, int F, int sequence, char *err, size_t errlen) {
    if (tpmlp_split_check(TPMLP_SPLIT_BALANCED, F, p, -1, err, errlen) != 0) return 2;
    if (sequence && N % p != 0)
        return snprintf(err, errlen,
                        "--tp: the sequence stage splits the N = %d rows over %d ranks: N must be a multiple of p", N,
                        p),
               2;
    return 0;
}

int tp_run_load(const char *vectors, const tp_run_opts *o, tpmlp_mlp32 *in, tpmlp_vec_dims *d, char *err,
                size_t errlen) {
    st_file f;
    if (st_open(&f, vectors, err, errlen) != 0) return 2;
    int rc = tpmlp_vec_load_inputs(&f, in, d, err, errlen);
    st_close(&f);
    if (rc != 0) return 2;
    if (tp_run_check_p(o->p, in->N, in->F, o->sequence, err, errlen) != 0) return tpmlp_mlp32_free(in), 2;
    return 0;
}

/* DIR/rank-R.safetensors: the rank's tensors m (downloaded, with its
 * partial sums), for `check --tp P --rank R`. */
static int write_rank(const char *dir, const tp_shard *s, const tpmlp_mlp32 *m, const tpmlp_vec_dims *d) {
    char path[4096], err[512];
    snprintf(path, sizeof path, "%s/rank-%d.safetensors", dir, s->rank);
    const float *t[V_ALL];
    for (int i = 0; i < V_ALL; i++) t[i] = tpmlp_mlp32_tensor(m, (tpmlp_vec_id)i);
    int rc = tpmlp_check_write_rank(path, d, s->p, s->rank, TPMLP_SPLIT_BALANCED, t, err, sizeof err);
    if (rc != 0) fprintf(stderr, "tpmlp: rank %d: %s\n", s->rank, err);
    return rc ? -1 : 0;
}

static int run_sequence(tpmlp_comm *c, tp_compute *cpt, const tpmlp_mlp32 *in, tpmlp_mlp32 *full,
                        const tp_run_opts *o) {
    sp_shard s;
    if (sp_shard_alloc(&s, cpt, in->N, in->D, in->F, c->size, c->rank, in->act) != 0) return -1;
    int rc = sp_shard_from_full(&s, in) || sp_forward(&s, c);
    if (rc == 0 && o->between) o->between(c->rank);
    rc = rc || sp_backward(&s, c) || sp_gather_outputs(&s, c, full);
    sp_shard_free(&s);
    return rc ? -1 : 0;
}

int tp_run_rank(tpmlp_comm *c, tpmlp_comm *host, tp_compute *cpt, const tpmlp_mlp32 *in, tpmlp_mlp32 *full,
                const tp_run_opts *o, const tpmlp_vec_dims *d) {
    if (o->sequence) return run_sequence(c, cpt, in, full, o);
    tp_shard s;
    if (tp_shard_alloc(&s, cpt, in->N, in->D, in->F, c->size, c->rank, in->act) != 0) return -1;
    s.overlap = o->overlap;
    int rc = (o->rank_dir && tp_shard_keep_partials(&s)) || tp_shard_from_full(&s, in) || tp_forward(&s, c);
    if (rc == 0 && o->between) o->between(c->rank); /* between the collectives */
    rc = rc || tp_backward(&s, c);
    if (rc == 0 && (o->rank_dir || host)) { /* the outputs on the host once, for both */
        tpmlp_mlp32 mine;
        rc = tp_shard_download(&s, &mine);
        if (rc == 0) {
            rc = o->rank_dir && write_rank(o->rank_dir, &s, &mine, d);
            /* host NULL: no gather (each rank wrote its own file) */
            rc = rc || (host && tp_gather_outputs(&mine, in->F, host, full));
            tpmlp_mlp32_free(&mine);
        }
    }
    tp_shard_free(&s);
    return rc ? -1 : 0;
}

typedef struct {
    tpmlp_comm *comm, *host;
    tp_compute *cpt;
    const tpmlp_mlp32 *in;
    tpmlp_mlp32 *full;
    const tp_run_opts *o;
    const tpmlp_vec_dims *d;
} rank_job;

static void *rank_thread(void *arg) {
    rank_job *j = arg;
    const int r = j->comm->rank;
    if (j->o->thread_init) j->o->thread_init(r, j->cpt);
    if (tp_run_rank(j->comm, j->host, j->cpt, j->in, r == 0 ? j->full : NULL, j->o, j->d) != 0) {
        /* the other ranks may be waiting in a collective: end the process */
        fprintf(stderr, "tpmlp: rank %d failed; stopping every rank\n", r);
        exit(1);
    }
    return NULL;
}

int tp_run_threads(tpmlp_comm *comms, tpmlp_comm *hosts, tp_compute *const *cpts, const tpmlp_mlp32 *in,
                   tpmlp_mlp32 *full, const tp_run_opts *o, const tpmlp_vec_dims *d) {
    const int p = o->p;
    rank_job *jobs = tpmlp_alloc((size_t)p, sizeof *jobs, "rank jobs");
    pthread_t *th = tpmlp_alloc((size_t)p, sizeof *th, "rank threads");
    int started = 0;
    for (; started < p; started++) {
        jobs[started] = (rank_job){&comms[started], &hosts[started], cpts[started], in, full, o, d};
        if (pthread_create(&th[started], NULL, rank_thread, &jobs[started]) != 0) {
            fprintf(stderr, "tpmlp: cannot start the thread of rank %d\n", started);
            exit(1); /* the started ranks wait for it in their first collective */
        }
    }
    for (int r = 0; r < p; r++) pthread_join(th[r], NULL);
    free(jobs), free(th);
    return 0;
}

int tp_run_write(const char *out, const tpmlp_mlp32 *full, const tpmlp_vec_dims *d, char *err, size_t errlen) {
    return tpmlp_vec_write_outputs(out, full, d, err, errlen) == 0 ? 0 : 1;
}
