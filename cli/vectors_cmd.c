/* tpmlp gen, info, check: the vector files and the comparison against them. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "args.h"
#include "bound.h"
#include "check.h"
#include "commands.h"
#include "safetensors.h"
#include "stages.h"
#include "util.h"
#include "vectors.h"

static const char gen_usage[] =
    "usage: tpmlp gen --batch B --seq T --hidden D [--ffn F] [--act gelu|gelu_tanh|relu] [--seed S] -o FILE\n"
    "Writes a test-vector file (safetensors): the float32 inputs and the float64 reference\n"
    "outputs, byte for byte the same on every machine. Names and shapes: docs/vectors.md.\n"
    "  --ffn default 4 × hidden, --act default gelu, --seed default 0, --threads N (same bytes)\n";

int cmd_gen(int argc, char **argv) {
    tpmlp_shape_args s = {.act = TPMLP_GELU, .seed = 0};
    const char *out = NULL;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--help") == 0) {
            fputs(gen_usage, stdout);
            return 0;
        }
        if (args_shape_flag(&s, argc, argv, &i)) continue;
        if (strcmp(argv[i], "-o") == 0 || strcmp(argv[i], "--output") == 0) {
            if (i + 1 >= argc) tpmlp_die(TPMLP_EXIT_USAGE, "%s: missing file name", argv[i]);
            out = argv[++i];
            continue;
        }
        tpmlp_die(TPMLP_EXIT_USAGE, "gen: unknown argument '%s' (tpmlp gen --help)", argv[i]);
    }
    if (s.batch == 0 || s.seq == 0 || s.hidden == 0 || out == NULL)
        tpmlp_die(TPMLP_EXIT_USAGE, "gen: --batch, --seq, --hidden and -o are required (tpmlp gen --help)");
    args_shape_finish(&s);
    args_apply_threads(&s); /* the threads only share out the work: the bytes are the same */
    tpmlp_vec_dims d = {s.batch, s.seq, s.hidden, s.ffn, s.act, s.seed};
    char err[512];
    if (tpmlp_vec_generate(out, &d, err, sizeof err) != 0) tpmlp_die(1, "%s", err);
    return 0;
}

static void open_or_die(st_file *f, const char *path) {
    char err[512];
    if (st_open(f, path, err, sizeof err) != 0) tpmlp_die(TPMLP_EXIT_USAGE, "%s", err);
}

int cmd_info(int argc, char **argv) {
    if (argc != 2 || strcmp(argv[1], "--help") == 0) {
        if (argc == 2) {
            fputs("usage: tpmlp info FILE\nPrints a safetensors file's metadata and a table of its tensors.\n", stdout);
            return 0;
        }
        tpmlp_die(TPMLP_EXIT_USAGE, "info: expected one FILE (tpmlp info --help)");
    }
    st_file f;
    open_or_die(&f, argv[1]);
    printf("%s: %zu bytes, header %zu bytes, %d tensors\n", f.path, f.size, f.data_start - 8, f.ntensors);
    for (int i = 0; i < f.nmeta; i++) printf("  %-18s %s\n", f.meta_keys[i], f.meta_values[i]);
    printf("  %-24s %-5s %-22s %12s\n", "tensor", "dtype", "shape", "bytes");
    for (int i = 0; i < f.ntensors; i++) {
        const st_tensor *t = &f.tensors[i];
        char shape[96] = "[";
        for (int k = 0; k < t->ndim; k++) {
            size_t len = strlen(shape);
            snprintf(shape + len, sizeof shape - len, "%s%llu", k ? ", " : "", (unsigned long long)t->shape[k]);
        }
        strncat(shape, "]", sizeof shape - strlen(shape) - 1);
        printf("  %-24s %-5s %-22s %12zu\n", t->name, st_dtype_name(t->dtype), shape, t->end - t->begin);
    }
    st_close(&f);
    return 0;
}

static const char check_usage[] =
    "usage: tpmlp check [--dtype fp32|tf32|bf16|fp16] [--dump FILE] VECTORS THEIRS\n"
    "Compares every output tensor in THEIRS (safetensors; F32, F64, BF16 or F16; the names of\n"
    "docs/vectors.md) with the float64 reference in VECTORS, element by element, within a\n"
    "bound from rounding-error analysis for arithmetic of --dtype's unit round-off (default fp32).\n"
    "--dump FILE writes, per element, |theirs - reference| / bound (NAME) and the bound (NAME.bound).\n"
    "Exit 0: every tensor present passes; 1: some tensor fails (or none is present); 2: bad input.\n";

/* "[n, f]" for flat index k of an output tensor */
static void index_str(char *buf, size_t len, tpmlp_vec_id id, const tpmlp_vec_dims *d, uint64_t k) {
    uint64_t shape[ST_MAX_DIMS], idx[ST_MAX_DIMS];
    int nd = tpmlp_vec_shape(id, d, shape);
    for (int i = nd - 1; i >= 0; i--) idx[i] = k % shape[i], k /= shape[i];
    size_t at = (size_t)snprintf(buf, len, "[");
    for (int i = 0; i < nd && at < len; i++)
        at += (size_t)snprintf(buf + at, len - at, "%s%llu", i ? "," : "", (unsigned long long)idx[i]);
    if (at < len) snprintf(buf + at, len - at, "]");
}

/* Checks THEIRS against VECTORS and prints the table; returns 0 (all pass)
 * or 1; bad input ends the program with 2. */
static int report_check(const char *vec_path, const char *theirs_path, const char *dtype, const char *dump) {
    const char *files[2] = {vec_path, theirs_path};
    st_file vec, theirs;
    open_or_die(&vec, files[0]);
    open_or_die(&theirs, files[1]);
    tpmlp_check_row rows[TPMLP_CHECK_OUTPUTS];
    char err[512];
    tpmlp_vec_dims d;
    if (tpmlp_vec_read_dims(&vec, &d, err, sizeof err) != 0 ||
        tpmlp_check_dump(rows, &vec, &theirs, tpmlp_dtype_u(dtype), dump, err, sizeof err) != 0)
        tpmlp_die(TPMLP_EXIT_USAGE, "%s", err);
    printf("check %s against %s: B=%d T=%d D=%d F=%d act=%s, --dtype %s (u = 2^%d), bound λ·√K·u·Σ|terms|, λ=%g\n",
           files[1], files[0], d.B, d.T, d.D, d.F, tpmlp_act_name(d.act), dtype, (int)log2(tpmlp_dtype_u(dtype)),
           TPMLP_LAMBDA);
    printf("  %-24s %-5s %10s %10s  %-14s %s\n", "tensor", "dtype", "max |err|", "budget", "worst element", "");
    int all = 1, present = 0;
    for (int i = 0; i < TPMLP_CHECK_OUTPUTS; i++) {
        if (!rows[i].present) continue;
        present++;
        char where[64];
        index_str(where, sizeof where, rows[i].id, &d, rows[i].worst);
        printf("  %-24s %-5s %10.3e %9.1f%%  %-14s %s\n", tpmlp_vec_specs[rows[i].id].name,
               st_dtype_name(rows[i].dtype), rows[i].max_abs_err, 100 * rows[i].used, where,
               rows[i].pass ? "PASS" : "FAIL");
        if (!rows[i].pass)
            printf("      worst: got %.9g, reference %.9g, bound %.3g%s\n", rows[i].worst_got, rows[i].worst_ref,
                   rows[i].worst_bound, isfinite(rows[i].worst_got) ? "" : " (NaN or Inf never passes)");
        all &= rows[i].pass;
    }
    int missing = 0;
    for (int i = 0; i < TPMLP_CHECK_OUTPUTS; i++)
        if (!rows[i].present) printf("%s%s", missing++ ? ", " : "  not provided: ", tpmlp_vec_specs[rows[i].id].name);
    if (missing) printf("\n");
    for (int i = 0; i < theirs.ntensors; i++) {
        int known = 0;
        for (int k = 0; k < V_COUNT; k++) known |= strcmp(theirs.tensors[i].name, tpmlp_vec_specs[k].name) == 0;
        if (!known) printf("  ignored (not a vector name): %s\n", theirs.tensors[i].name);
    }
    if (present == 0)
        printf("FAIL: %s holds none of the output tensors\n", files[1]);
    else
        printf("%s: %d of %d tensors checked\n", all ? "PASS" : "FAIL", present, TPMLP_CHECK_OUTPUTS);
    st_close(&vec), st_close(&theirs);
    return present > 0 && all ? 0 : 1;
}

int cmd_check(int argc, char **argv) {
    const char *dtype = "fp32", *files[2] = {NULL, NULL}, *dump = NULL;
    int nfiles = 0;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--help") == 0) {
            fputs(check_usage, stdout);
            return 0;
        }
        if (strcmp(argv[i], "--dtype") == 0) {
            if (i + 1 >= argc) tpmlp_die(TPMLP_EXIT_USAGE, "--dtype: missing value (allowed: fp32, tf32, bf16, fp16)");
            dtype = argv[++i];
            if (tpmlp_dtype_u(dtype) < 0)
                tpmlp_die(TPMLP_EXIT_USAGE, "--dtype: '%s' is not one of fp32, tf32, bf16, fp16", dtype);
            continue;
        }
        if (strcmp(argv[i], "--dump") == 0) {
            if (i + 1 >= argc) tpmlp_die(TPMLP_EXIT_USAGE, "--dump: missing file name");
            dump = argv[++i];
            continue;
        }
        if (argv[i][0] == '-' && argv[i][1] != '\0')
            tpmlp_die(TPMLP_EXIT_USAGE, "check: unknown option '%s' (tpmlp check --help)", argv[i]);
        if (nfiles == 2)
            tpmlp_die(TPMLP_EXIT_USAGE, "check: expected two files, VECTORS and THEIRS; got a third '%s'", argv[i]);
        files[nfiles++] = argv[i];
    }
    if (nfiles != 2) tpmlp_die(TPMLP_EXIT_USAGE, "check: expected two files, VECTORS and THEIRS (tpmlp check --help)");
    return report_check(files[0], files[1], dtype, dump);
}

static const char run_usage[] =
    "usage: tpmlp run --stage STAGE [--tp P] [--dtype fp32|tf32|bf16] VECTORS -o OUT [--threads N]\n"
    "                 [--lt] [--launch mpi|local]   (cuda and nccl stages)\n"
    "Runs a stage on a vector file's inputs, writes its outputs under the vector names (F32) and\n"
    "prints their check against VECTORS (exit 1 if any fails). Stages:\n"
    "  reference  the float32 MLP in one process\n"
    "  shard      P ranks as threads of one process, summing their partial outputs\n"
    "  mpi        P processes, MPI_Allreduce:        mpiexec -n P tpmlp run --stage mpi --tp P ...\n"
    "  ring       P processes, a hand-written ring all-reduce over MPI point-to-point\n"
    "  sequence   P processes, Megatron's sequence parallelism: rows split too, all-gather\n"
    "             before fc1 and reduce-scatter after fc2 (N a multiple of P)\n"
    "  cuda       one GPU, cuBLAS + our kernels; --dtype fp32|tf32|bf16; with --tp P, P shards on\n"
    "             that GPU, their partials summed there (runs tpmlp-cuda)\n"
    "             --lt: bias + GELU (tanh) and its backward fused into cuBLASLt's GEMM epilogues\n"
    "  nccl       P GPUs, ncclAllReduce; one process per GPU: mpiexec -n P tpmlp run --stage nccl --tp P,\n"
    "             or one process driving P local GPUs, no MPI: tpmlp run --stage nccl --launch local --tp P\n";

/* The cuda stage is the program tpmlp-cuda beside this one (so that tpmlp
 * itself never links CUDA). Returns its exit status. */
static int run_cuda_program(const char *in, const char *out, const char *dtype, int p, int nccl, int lt,
                            const char *launch) {
    char self[4096], prog[4200];
    ssize_t n = readlink("/proc/self/exe", self, sizeof self - 1);
    if (n <= 0) tpmlp_die(1, "--stage cuda: cannot find this program's folder (/proc/self/exe)");
    self[n] = '\0';
    char *slash = strrchr(self, '/');
    if (slash) *slash = '\0';
    snprintf(prog, sizeof prog, "%s/tpmlp-cuda", self);
    if (access(prog, X_OK) != 0)
        tpmlp_die(TPMLP_EXIT_USAGE, "--stage cuda: %s not found (configure found no CUDA toolkit: --with-cuda=DIR)",
                  prog);
    char tp[16];
    snprintf(tp, sizeof tp, "%d", p);
    const char *args[16];
    int k = 0;
    args[k++] = prog;
    if (nccl) args[k++] = "--nccl", args[k++] = "--launch", args[k++] = launch;
    if (lt) args[k++] = "--lt";
    args[k++] = "--tp", args[k++] = tp, args[k++] = "--dtype", args[k++] = dtype;
    args[k++] = in, args[k++] = "-o", args[k++] = out, args[k] = NULL;
    fflush(NULL);
    pid_t pid = fork();
    if (pid < 0) tpmlp_die(1, "--stage cuda: fork failed");
    if (pid == 0) {
        execv(prog, (char *const *)args);
        _exit(127);
    }
    int status;
    if (waitpid(pid, &status, 0) < 0) tpmlp_die(1, "--stage cuda: waitpid failed");
    return WIFEXITED(status) ? WEXITSTATUS(status) : 1;
}

int cmd_run(int argc, char **argv) {
    const char *stage = NULL, *in = NULL, *out = NULL, *dtype = "fp32", *launch = "mpi";
    int p = 1, lt = 0;
    tpmlp_shape_args s = {0};
    for (int i = 1; i < argc; i++) {
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (strcmp(argv[i], "--help") == 0) {
            fputs(run_usage, stdout);
            return 0;
        } else if (strcmp(argv[i], "--threads") == 0) {
            s.threads = args_positive_int("--threads", v), i++;
        } else if (strcmp(argv[i], "--dtype") == 0) {
            if (v == NULL) tpmlp_die(TPMLP_EXIT_USAGE, "--dtype: missing value (allowed: fp32, tf32, bf16)");
            dtype = v, i++;
        } else if (strcmp(argv[i], "--tp") == 0) {
            p = args_positive_int("--tp", v), i++;
        } else if (strcmp(argv[i], "--lt") == 0) {
            lt = 1;
        } else if (strcmp(argv[i], "--launch") == 0) {
            if (v == NULL || (strcmp(v, "mpi") != 0 && strcmp(v, "local") != 0))
                tpmlp_die(TPMLP_EXIT_USAGE, "--launch: expected mpi or local, got '%s'", v ? v : "nothing");
            launch = v, i++;
        } else if (strcmp(argv[i], "--stage") == 0 || strcmp(argv[i], "-o") == 0) {
            if (v == NULL) tpmlp_die(TPMLP_EXIT_USAGE, "%s: missing value", argv[i]);
            *(argv[i][1] == 'o' ? &out : &stage) = v, i++;
        } else if (argv[i][0] == '-') {
            tpmlp_die(TPMLP_EXIT_USAGE, "run: unknown option '%s' (tpmlp run --help)", argv[i]);
        } else if (in == NULL) {
            in = argv[i];
        } else {
            tpmlp_die(TPMLP_EXIT_USAGE, "run: expected one VECTORS file; got a second '%s'", argv[i]);
        }
    }
    if (stage == NULL || in == NULL || out == NULL)
        tpmlp_die(TPMLP_EXIT_USAGE, "run: --stage, VECTORS and -o are required (tpmlp run --help)");
    const int gpu_stage = strcmp(stage, "cuda") == 0 || strcmp(stage, "nccl") == 0;
    if (lt && !gpu_stage)
        tpmlp_die(TPMLP_EXIT_USAGE, "--lt: only for the cuda and nccl stages (got --stage %s)", stage);
    if (strcmp(launch, "mpi") != 0 && strcmp(stage, "nccl") != 0)
        tpmlp_die(TPMLP_EXIT_USAGE, "--launch: only for the nccl stage (got --stage %s)", stage);
    args_apply_threads(&s);
    char err[512] = "";
    int rc, root = 1;
    if (strcmp(stage, "reference") == 0) {
        if (p != 1) tpmlp_die(TPMLP_EXIT_USAGE, "--tp: the reference stage runs on one rank (got %d)", p);
        st_file vec;
        open_or_die(&vec, in);
        rc = tpmlp_run_reference_file(&vec, out, err, sizeof err) == 0 ? 0 : 1;
        st_close(&vec);
    } else if (strcmp(stage, "cuda") == 0 || strcmp(stage, "nccl") == 0) {
        int nccl = strcmp(stage, "nccl") == 0;
        rc = run_cuda_program(in, out, dtype, p, nccl, lt, launch);
        if (rc == 77) return 1; /* no GPU: it said so */
        if (rc != 0) return rc;
        if (nccl && getenv("OMPI_COMM_WORLD_RANK") && atoi(getenv("OMPI_COMM_WORLD_RANK")) != 0) return 0;
        return report_check(in, out, dtype, NULL);
    } else if (strcmp(stage, "shard") == 0) {
        rc = tp_run_shard(in, out, p, err, sizeof err);
    } else if (strcmp(stage, "mpi") == 0 || strcmp(stage, "ring") == 0 || strcmp(stage, "sequence") == 0) {
#ifdef TPMLP_HAVE_MPI
        rc = tp_run_mpi(stage, in, out, p, &root, err, sizeof err);
#else
        tpmlp_die(TPMLP_EXIT_USAGE, "--stage %s: this tpmlp was built without MPI (install libopenmpi-dev)", stage);
#endif
    } else {
        tpmlp_die(TPMLP_EXIT_USAGE,
                  "--stage: '%s' is not a stage (allowed: reference, shard, mpi, ring, sequence, cuda, nccl)", stage);
    }
    if (rc != 0) {
        if (root && err[0]) fprintf(stderr, "tpmlp: %s\n", err); /* (the mpi stages print their own) */
        return rc;
    }
    if (!root) return 0;
    printf("stage %s, p = %d: outputs written to %s\n", stage, p, out);
    return report_check(in, out, "fp32", NULL);
}
