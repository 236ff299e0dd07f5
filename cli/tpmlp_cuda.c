/* tpmlp-cuda: stages 5 and 6, the tensor-parallel MLP on GPUs. The step is
 * tp_forward/tp_backward (parallel/tp_mlp.c), the same as on the CPU, over the
 * cuda compute backend (parallel/compute_cuda.cu) and a communicator of
 * device buffers; the runner is parallel/runner.c's. Math modes:
 *   fp32  fp32 storage, fp32 GEMMs
 *   tf32  fp32 storage, GEMMs on TF32 tensor cores (CUBLAS_COMPUTE_32F_FAST_TF32)
 *   bf16  bf16 storage, fp32 accumulation (CUBLAS_COMPUTE_32F)
 * Reads a vector file, writes the outputs under the vector names (F32), so
 * `tpmlp check --dtype MODE VECTORS OUT` verifies them. `tpmlp run --stage
 * cuda|nccl` runs this program. Without a GPU it says so and exits 77. */
#include "config.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "args.h"
#include "comm.h"
#include "compute_cuda.h"
#include "launch.h"
#include "runner.h"
#include "tp_mlp.h"
#include "util.h"
#ifdef TPMLP_HAVE_NCCL
#include "comm_nccl.h"
#endif
#ifdef TPMLP_HAVE_MPI
#include <mpi.h>

#include "comm_mpi.h"
#endif

static const char usage[] =
    "usage: tpmlp-cuda [--dtype fp32|tf32|bf16] [--lt] [--tp P] [--overlap on|off] VECTORS -o OUT\n"
    "       tpmlp-cuda --nccl [--launch mpi|local] --tp P [--dtype fp32|tf32|bf16] [--lt] VECTORS -o OUT\n"
    "       tpmlp-cuda --nccl --launch files --tp P --rank R --nccl-id FILE --rank-outputs DIR VECTORS\n"
    "       tpmlp-cuda [--dtype ...] [--lt] --bench N D F\n"
    "       tpmlp-cuda --version | --help\n"
    "  --tp P           P shards: on this one GPU (summed there), or with --nccl one per GPU\n"
    "  --launch mpi     (--nccl) one process per GPU under mpiexec, the ncclUniqueId sent over MPI\n"
    "  --launch local   (--nccl) one process, one thread per local GPU\n"
    "  --launch files   (--nccl) one process per rank, started by you: rank 0 writes the ncclUniqueId\n"
    "                   to FILE, the others read it; each rank writes DIR/rank-R.safetensors\n"
    "                   (tpmlp check --tp P --rank R); no -o\n"
    "  --lt             bias + GELU (tanh) and its backward in cuBLASLt's GEMM epilogues\n"
    "  --overlap on|off dX's all-reduce during the weight gradients (default on)\n"
    "  --kernels V      run version V of every kernel, or its last (1 to 4; default: the fastest measured)\n"
    "  --bench N D F    fwd+bwd against the six GEMMs alone, alternating in one run";

typedef struct {
    const char *dtype, *in, *out, *launch, *id_file, *rank_dir;
    tp_cuda_mode mode;
    int bench[3]; /* --bench N D F */
    int p, rank, nccl, lt, overlap, kernels;
} opts;

/* ------------------------------------------------------------ the benchmark */

typedef struct {
    tp_compute *k;
    int which; /* one of the six GEMMs */
    tp_shard *s;
} gemm_job;
static int one_gemm(void *arg) {
    gemm_job *j = arg;
    tp_shard *s = j->s;
    const tp_compute_ops *o = j->k->ops;
    const int N = s->N, D = s->D, F = s->Fr;
    switch (j->which) {
    case 0: return o->linear(j->k, s->h, s->x, s->w1, N, D, F);          /* H = X·W1ᵀ  */
    case 1: return o->linear(j->k, s->y, s->a, s->w2, N, F, D);          /* Y = A·W2ᵀ  */
    case 2: return o->linear_wgrad(j->k, s->dw2, s->dy, s->a, N, F, D);  /* dW2 = dYᵀ·A */
    case 3: return o->linear_dgrad(j->k, s->dh, s->dy, s->w2, N, F, D);  /* dA = dY·W2 */
    case 4: return o->linear_wgrad(j->k, s->dw1, s->dh, s->x, N, D, F);  /* dW1 = dHᵀ·X */
    default: return o->linear_dgrad(j->k, s->dx, s->dh, s->w1, N, D, F); /* dX = dH·W1 */
    }
}

static int cmp_float(const void *a, const void *b) {
    float x = *(const float *)a, y = *(const float *)b;
    return (x > y) - (x < y);
}

/* The step (ours, and with --lt cuBLASLt's) against its six GEMMs alone (the
 * same step with every other operation a no-op: TP_WRAP_GEMMS_ONLY),
 * alternating in one run; medians of 21. Then each GEMM alone. p = 1, so no
 * communicator reads a buffer and the step needs no host sync: each variant
 * runs on one stream as queued (TP_WRAP_NO_SYNC), timed by CUDA events. */
static int bench(const opts *o) {
    const int N = o->bench[0], D = o->bench[1], F = o->bench[2];
    /* cuBLASLt's GELU epilogue is the tanh form: with --lt every variant uses it */
    const tpmlp_act act = o->lt ? TPMLP_GELU_TANH : TPMLP_GELU;
    const tpmlp_vec_dims d = {.B = 1, .T = N, .D = D, .F = F, .act = act, .seed = 1};
    enum { OURS, GEMMS, LT };
    const int nv = o->lt ? 3 : 2, reps = 21;
    tp_compute base[3], k[3], *ctx[3]; /* base[GEMMS] unused: the GEMMs alone run on base[OURS] */
    tpmlp_comm c[3];
    tp_shard s[3];
    if (tp_compute_cuda_create(&base[OURS], 0, o->mode, 0, o->kernels) != 0 ||
        (o->lt && tp_compute_cuda_create(&base[LT], 0, o->mode, 1, o->kernels) != 0))
        return 1;
    for (int v = 0; v < nv; v++) {
        ctx[v] = &base[v == GEMMS ? OURS : v];
        const int flags = TP_WRAP_NO_SYNC | (v == GEMMS ? TP_WRAP_GEMMS_ONLY : 0);
        if (tp_compute_wrap(&k[v], ctx[v], flags) != 0) return 1;
        if (v != GEMMS && (tp_shard_alloc(&s[v], &k[v], N, D, F, 1, 0, act) != 0 || tp_shard_generate(&s[v], &d) != 0))
            return 1;
    }
    for (int v = 0; v < nv; v++)
        if (comm_cuda_local_create(&c[v], 1, &ctx[v]) != 0) return 1;
    s[GEMMS] = s[OURS], s[GEMMS].cpt = &k[GEMMS]; /* the same buffers */
    float *t = tpmlp_alloc((size_t)(3 * reps), sizeof *t, "times");
    for (int r = -1; r < reps; r++) /* r = -1: warm-up */
        for (int v = 0; v < nv; v++) {
            tp_step_job j = {&s[v], &c[v]};
            float ms;
            if (tp_compute_cuda_time(ctx[v], tp_step, &j, &ms) != 0) return 1;
            if (r >= 0) t[v * reps + r] = ms;
        }
    float med[3];
    for (int v = 0; v < nv; v++)
        qsort(t + v * reps, (size_t)reps, sizeof *t, cmp_float), med[v] = t[v * reps + reps / 2];
    const double flops = 12.0 * N * D * (double)F;
    printf("cuda %s N=%d D=%d F=%d act=%s: fwd+bwd %.3f ms, gemms alone %.3f ms, ratio %.3f (GEMMs at %.1f TFLOP/s)\n",
           o->dtype, N, D, F, tpmlp_act_name(act), med[OURS], med[GEMMS], med[OURS] / med[GEMMS],
           flops / (med[GEMMS] * 1e-3) / 1e12);
    if (o->lt)
        printf("cuda %s N=%d D=%d F=%d act=%s: cublasLt epilogues fwd+bwd %.3f ms, ratio %.3f to the GEMMs alone; "
               "ours / cublasLt %.3f\n",
               o->dtype, N, D, F, tpmlp_act_name(act), med[LT], med[LT] / med[GEMMS], med[OURS] / med[LT]);
    /* each GEMM alone: which of the six holds the step back */
    static const char *const names[6] = {"H = X W1^T", "Y = A W2^T",   "dW2 = dY^T A",
                                         "dA = dY W2", "dW1 = dH^T X", "dX = dH W1"};
    const int shape[6][3] = {{N, F, D}, {N, D, F}, {D, F, N}, {N, F, D}, {F, D, N}, {N, D, F}};
    static const char *const ops[6] = {"NT", "NT", "TN", "NN", "TN", "NN"}; /* which operand is transposed */
    for (int g = 0; g < 6; g++) {
        gemm_job j = {&base[OURS], g, &s[OURS]};
        float ms[11];
        for (int r = 0; r < 11; r++)
            if (tp_compute_cuda_time(&base[OURS], one_gemm, &j, &ms[r]) != 0) return 1;
        qsort(ms, 11, sizeof *ms, cmp_float);
        printf("  %-13s %5d x %5d x %5d (%s): %7.3f ms, %6.1f TFLOP/s\n", names[g], shape[g][0], shape[g][1],
               shape[g][2], ops[g], ms[5],
               2.0 * shape[g][0] * shape[g][1] * (double)shape[g][2] / (ms[5] * 1e-3) / 1e12);
    }
    free(t);
    for (int v = 0; v < nv; v++) {
        c[v].ops->destroy(&c[v]);
        if (v != GEMMS) tp_shard_free(&s[v]);
    }
    for (int v = 0; v < nv; v++) k[v].ops->destroy(&k[v]);
    base[OURS].ops->destroy(&base[OURS]);
    if (o->lt) base[LT].ops->destroy(&base[LT]);
    return 0;
}

/* ---------------------------------------------------------------- the runs */

static void bind_device(int rank, tp_compute *cpt) {
    if (tp_compute_cuda_bind(cpt) != 0) tpmlp_die(1, "rank %d: cannot use its GPU", rank);
}

/* p compute backends, rank r on devices[r] (or device 0 for all). */
static tp_compute *make_computes(const opts *o, int p, const int *devices, tp_compute ***ptrs) {
    tp_compute *k = tpmlp_alloc((size_t)p, sizeof *k, "compute backends");
    *ptrs = tpmlp_alloc((size_t)p, sizeof **ptrs, "compute backends");
    for (int r = 0; r < p; r++) {
        if (tp_compute_cuda_create(&k[r], devices ? devices[r] : 0, o->mode, o->lt, o->kernels) != 0)
            tpmlp_die(1, "rank %d: no compute backend on its GPU", r);
        (*ptrs)[r] = &k[r];
    }
    return k;
}

static void free_computes(tp_compute *k, tp_compute **ptrs, int p) {
    for (int r = 0; r < p; r++) k[r].ops->destroy(&k[r]);
    free(k), free(ptrs);
}

/* p threads of this process: the shards on this one GPU (nccl 0), or one per
 * local GPU over NCCL; the outputs gathered over a host group. */
static int run_threads(const opts *o, const tp_run_opts *ro, const tpmlp_mlp32 *in, tpmlp_mlp32 *full,
                       const tpmlp_vec_dims *d) {
    const int p = o->p;
    int *devices = NULL;
    tpmlp_comm *comms = tpmlp_alloc((size_t)p, sizeof *comms, "communicators"),
               *hosts = tpmlp_alloc((size_t)p, sizeof *hosts, "communicators");
    tp_compute **kp;
    if (o->nccl) {
        const int count = tp_cuda_device_count();
        if (count < 0) return 1;
        if (count < p)
            tpmlp_die(TPMLP_EXIT_USAGE,
                      "--launch local: --tp %d needs %d GPUs, this machine has %d (NCCL takes one rank per GPU)", p, p,
                      count);
        devices = tpmlp_alloc((size_t)p, sizeof *devices, "devices");
        for (int r = 0; r < p; r++) devices[r] = r;
    }
    tp_compute *k = make_computes(o, p, devices, &kp);
#ifdef TPMLP_HAVE_NCCL
    if (o->nccl && comm_nccl_create_local(comms, p, devices) != 0) return 1;
#endif
    if (!o->nccl && comm_cuda_local_create(comms, p, kp) != 0) return 1;
    if (comm_local_create(hosts, p) != 0) return 1;
    int rc = tp_run_threads(comms, hosts, kp, in, full, ro, d);
    for (int r = 0; r < p; r++) comms[r].ops->destroy(&comms[r]), hosts[r].ops->destroy(&hosts[r]);
    free_computes(k, kp, p);
    free(comms), free(hosts), free(devices);
    return rc;
}

#ifdef TPMLP_HAVE_NCCL
/* --launch files: rank 0 makes the ncclUniqueId and writes it to path
 * (complete or not at all: a temporary file renamed); the others wait for it
 * and take only a file written since they started (not one an earlier job
 * left). Rank 0 removes it once the communicator is made (run_files). */
static int share_id(const opts *o, char id[COMM_NCCL_ID_BYTES], time_t started) {
    const char *path = o->id_file;
    if (o->rank == 0) {
        char tmp[4200];
        snprintf(tmp, sizeof tmp, "%s.tmp%d", path, (int)getpid());
        if (comm_nccl_unique_id(id, COMM_NCCL_ID_BYTES) != 0) return -1;
        FILE *f = fopen(tmp, "wb");
        int ok = f != NULL && fwrite(id, 1, COMM_NCCL_ID_BYTES, f) == COMM_NCCL_ID_BYTES;
        const int saved = errno;
        if (f != NULL && fclose(f) != 0) ok = 0;
        if (ok && rename(tmp, path) == 0) return 0;
        fprintf(stderr, "tpmlp: --nccl-id %s: cannot write it: %s\n", path, strerror(ok ? errno : saved));
        unlink(tmp);
        return -1;
    }
    for (int tries = 0; tries < 600; tries++) { /* 60 s */
        struct stat st;
        FILE *f = stat(path, &st) == 0 && st.st_mtime >= started ? fopen(path, "rb") : NULL;
        if (f) {
            size_t got = fread(id, 1, COMM_NCCL_ID_BYTES, f);
            fclose(f);
            if (got == COMM_NCCL_ID_BYTES) return 0;
        }
        const struct timespec tenth = {0, 100000000};
        nanosleep(&tenth, NULL);
    }
    fprintf(stderr, "tpmlp: rank %d: --nccl-id %s: rank 0 wrote no id within 60 s\n", o->rank, path);
    return -1;
}

/* One rank of a job whose processes were started by hand: no host
 * communicator, so no gather; the rank writes its own file. A failing rank
 * aborts its communicator, so that the others' collectives fail too. */
static int run_files(const opts *o, const tp_run_opts *ro, const tpmlp_mlp32 *in, const tpmlp_vec_dims *d,
                     time_t started) {
    char id[COMM_NCCL_ID_BYTES];
    if (share_id(o, id, started) != 0) return 1;
    const int count = tp_cuda_device_count();
    if (count < 1) return 1;
    tp_compute k;
    tpmlp_comm c;
    if (tp_compute_cuda_create(&k, o->rank % count, o->mode, o->lt, o->kernels) != 0) return 1;
    if (comm_nccl_create(&c, id, o->rank, o->p, o->rank % count) != 0) return k.ops->destroy(&k), 1;
    if (o->rank == 0) unlink(o->id_file); /* every rank has read it: the communicator is made */
    const int rc = tp_run_rank(&c, NULL, &k, in, NULL, ro, d) != 0;
    if (rc)
        comm_nccl_abort(&c);
    else
        c.ops->destroy(&c);
    k.ops->destroy(&k);
    return rc;
}

#ifdef TPMLP_HAVE_MPI
/* One process per GPU under mpiexec: rank 0 makes the ncclUniqueId and
 * broadcasts it over MPI; the outputs are gathered over MPI. */
static int run_mpi(const opts *o, const tp_run_opts *ro, const tpmlp_mlp32 *in, tpmlp_mlp32 *full,
                   const tpmlp_vec_dims *d, int *root) {
    int rank = 0, size = 1;
    if (launch_mpi_init(&rank, &size) != 0) tpmlp_die(1, "tpmlp-cuda: MPI_Init failed");
    *root = rank == 0;
    if (size != o->p)
        tpmlp_die(TPMLP_EXIT_USAGE, "--tp %d but the job has %d rank%s (mpiexec -n %d ...)", o->p, size,
                  tpmlp_plural(size), o->p);
    tpmlp_comm host;
    if (comm_mpi_create(&host) != 0) tpmlp_die(1, "tpmlp-cuda: no MPI communicator");
    char id[COMM_NCCL_ID_BYTES] = {0};
    if (rank == 0 && comm_nccl_unique_id(id, sizeof id) != 0) MPI_Abort(MPI_COMM_WORLD, 1);
    /* (comm_mpi_check ends the job itself on an MPI error: no rank is left waiting) */
    comm_mpi_check(MPI_Bcast(id, sizeof id, MPI_BYTE, 0, MPI_COMM_WORLD), "mpi", "MPI_Bcast");
    /* one GPU per rank on each node: the rank among those sharing this node */
    MPI_Comm node;
    int local = 0;
    comm_mpi_check(MPI_Comm_split_type(MPI_COMM_WORLD, MPI_COMM_TYPE_SHARED, rank, MPI_INFO_NULL, &node), "mpi",
                   "MPI_Comm_split_type");
    comm_mpi_check(MPI_Comm_rank(node, &local), "mpi", "MPI_Comm_rank");
    comm_mpi_check(MPI_Comm_free(&node), "mpi", "MPI_Comm_free");
    const int count = tp_cuda_device_count();
    tp_compute k;
    tpmlp_comm c;
    if (count < 1 || tp_compute_cuda_create(&k, local % count, o->mode, o->lt, o->kernels) != 0 ||
        comm_nccl_create(&c, id, rank, size, local % count) != 0)
        MPI_Abort(MPI_COMM_WORLD, 1);
    if (tp_run_rank(&c, &host, &k, in, rank == 0 ? full : NULL, ro, d) != 0) {
        /* the other ranks may wait in a collective: stop them */
        fprintf(stderr, "tpmlp: rank %d failed; stopping every rank\n", rank);
        MPI_Abort(MPI_COMM_WORLD, 1);
    }
    c.ops->destroy(&c);
    k.ops->destroy(&k);
    host.ops->destroy(&host);
    return 0;
}
#endif
#endif

static void parse(opts *o, int argc, char **argv) {
    tpmlp_rank_args ra = {0, -1, TPMLP_SPLIT_BALANCED, 0};
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (strcmp(a, "--version") == 0) {
            printf("tpmlp-cuda %s\n", PACKAGE_VERSION);
            exit(0);
        } else if (strcmp(a, "--help") == 0) {
            printf("%s\n", usage);
            exit(0);
        } else if (strcmp(a, "--dtype") == 0 && v) {
            o->dtype = v, i++;
            if (tp_cuda_mode_parse(v, &o->mode) != 0)
                tpmlp_die(TPMLP_EXIT_USAGE, "--dtype: '%s' is not one of fp32, tf32, bf16", v);
        } else if (strcmp(a, "--bench") == 0) {
            for (int k = 0; k < 3; k++)
                o->bench[k] = args_positive_int("--bench", i + 1 < argc ? argv[i + 1] : NULL), i++;
        } else if (strcmp(a, "--split") != 0 && args_rank_flag(&ra, argc, argv, &i)) {
            continue; /* --tp P, --rank R: tpmlp's own parser */
        } else if (strcmp(a, "--overlap") == 0) {
            o->overlap = args_on_off("--overlap", v), i++;
        } else if (strcmp(a, "--kernels") == 0) {
            o->kernels = args_positive_int("--kernels", v), i++;
        } else if (strcmp(a, "--nccl") == 0) {
            o->nccl = 1;
        } else if (strcmp(a, "--lt") == 0) {
            o->lt = 1;
        } else if (strcmp(a, "--launch") == 0 && v) {
            o->launch = v, i++;
        } else if (strcmp(a, "--nccl-id") == 0 && v) {
            o->id_file = v, i++;
        } else if (strcmp(a, "--rank-outputs") == 0 && v) {
            o->rank_dir = v, i++;
        } else if (strcmp(a, "-o") == 0 && v) {
            o->out = v, i++;
        } else if (a[0] != '-' && o->in == NULL) {
            o->in = a;
        } else {
            tpmlp_die(TPMLP_EXIT_USAGE, "tpmlp-cuda: unexpected argument '%s' (tpmlp-cuda --help)", a);
        }
    }
    if (ra.tp) o->p = ra.tp;
    o->rank = ra.rank;
    const int files = strcmp(o->launch, "files") == 0;
    if (strcmp(o->launch, "mpi") != 0 && strcmp(o->launch, "local") != 0 && !files)
        tpmlp_die(TPMLP_EXIT_USAGE,
                  "--launch: '%s' is not one of mpi (one process per GPU), local (one process, all local GPUs), "
                  "files (one process per rank, started by hand)",
                  o->launch);
    if (o->kernels > TP_CUDA_KERNEL_VERSIONS)
        tpmlp_die(TPMLP_EXIT_USAGE, "--kernels: expected a version from 1 to %d", TP_CUDA_KERNEL_VERSIONS);
    if (o->bench[0]) {
        if (o->lt && o->bench[2] % 8 != 0)
            tpmlp_die(TPMLP_EXIT_USAGE, "--lt: cuBLASLt's GELU epilogue needs F to be a multiple of 8 (got %d)",
                      o->bench[2]);
        return;
    }
    if (files) {
        if (!o->nccl || o->rank < 0 || o->rank >= o->p || !o->id_file || !o->rank_dir || o->out)
            tpmlp_die(TPMLP_EXIT_USAGE, "--launch files: needs --nccl, --rank R (0 to P-1), --nccl-id FILE and "
                                        "--rank-outputs DIR, and no -o (each rank writes its own file)");
    } else if (o->in == NULL || o->out == NULL) {
        tpmlp_die(TPMLP_EXIT_USAGE, "tpmlp-cuda: VECTORS and -o OUT are required (or --bench N D F; --help)");
    }
    if (o->in == NULL) tpmlp_die(TPMLP_EXIT_USAGE, "tpmlp-cuda: VECTORS is required (--help)");
}

int main(int argc, char **argv) {
    const time_t started = time(NULL) - 1; /* (seconds: an id file of this second's start counts) */
    (void)started;                         /* (used by --launch files only) */
    opts o = {.dtype = "fp32", .launch = "mpi", .mode = TP_CUDA_FP32, .p = 1, .rank = -1, .overlap = 1};
    parse(&o, argc, argv);
    char why[160];
    if (tp_cuda_no_gpu(why, sizeof why)) {
        fprintf(stderr, "tpmlp: %s\n", why);
        return 77;
    }
    if (o.bench[0]) return bench(&o);

    const tp_run_opts ro = {.p = o.p, .overlap = o.overlap, .rank_dir = o.rank_dir, .thread_init = bind_device};
    tpmlp_mlp32 in, full;
    tpmlp_vec_dims d;
    char err[512];
    if (tp_run_load(o.in, &ro, &in, &d, err, sizeof err) != 0) tpmlp_die(TPMLP_EXIT_USAGE, "%s", err);
    if (o.lt && in.act != TPMLP_GELU_TANH)
        tpmlp_die(TPMLP_EXIT_USAGE,
                  "--lt: cuBLASLt's GELU epilogue is the tanh approximation; %s has act = %s (use a gelu_tanh "
                  "vector file, or leave out --lt)",
                  o.in, tpmlp_act_name(in.act));
    for (int r = 0; o.lt && r < o.p; r++) {
        int f0, Fr;
        tp_slice(in.F, o.p, r, &f0, &Fr);
        if (Fr % 8 != 0)
            tpmlp_die(TPMLP_EXIT_USAGE,
                      "--lt: cuBLASLt's GELU epilogue needs the shard width F/p to be a multiple of 8 (rank %d "
                      "has %d)",
                      r, Fr);
    }
    int rc = 0, root = 1;
    const int files = strcmp(o.launch, "files") == 0;
    if (!files) tpmlp_mlp32_alloc(&full, in.N, in.D, in.F, in.act);
    if (!o.nccl) {
        rc = run_threads(&o, &ro, &in, &full, &d);
    } else {
#ifdef TPMLP_HAVE_NCCL
        if (strcmp(o.launch, "local") == 0)
            rc = run_threads(&o, &ro, &in, &full, &d);
        else if (files)
            rc = run_files(&o, &ro, &in, &d, started);
        else {
#ifdef TPMLP_HAVE_MPI
            rc = run_mpi(&o, &ro, &in, &full, &d, &root);
#else
            tpmlp_die(TPMLP_EXIT_USAGE, "--launch mpi: this build has no MPI (use --launch local or files)");
#endif
        }
#else
        tpmlp_die(TPMLP_EXIT_USAGE, "--nccl: this build found no NCCL");
#endif
    }
    if (rc == 0 && root && !files && tp_run_write(o.out, &full, &d, err, sizeof err) != 0) tpmlp_die(1, "%s", err);
#ifdef TPMLP_HAVE_MPI
    if (o.nccl && strcmp(o.launch, "mpi") == 0) MPI_Finalize();
#endif
    if (!files) tpmlp_mlp32_free(&full);
    tpmlp_mlp32_free(&in);
    if (rc != 0) return 1;
    const char *stage = o.nccl ? "nccl" : "cuda", *lt = o.lt ? ", cuBLASLt epilogues" : "";
    if (files)
        printf("stage nccl (%s%s, p = %d): rank %d wrote %s/rank-%d.safetensors; verify with: tpmlp check --tp %d "
               "--rank %d --dtype %s %s %s/rank-%d.safetensors\n",
               o.dtype, lt, o.p, o.rank, o.rank_dir, o.rank, o.p, o.rank, o.dtype, o.in, o.rank_dir, o.rank);
    else if (root)
        printf("stage %s (%s%s, p = %d): outputs written to %s; verify with: tpmlp check --dtype %s %s %s\n", stage,
               o.dtype, lt, o.p, o.out, o.dtype, o.in, o.out);
    return 0;
}
