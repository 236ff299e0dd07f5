/* tpmlp gen, check, run: the vector files, the comparison against them, the stages. */
#include "config.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "args.h"
#include "bound.h"
#include "check.h"
#include "commands.h"
#include "json.h"
#include "launch.h"
#include "safetensors.h"
#include "runner.h"
#include "util.h"
#include "vectors.h"

static const char gen_usage[] =
    "usage: tpmlp gen --batch B --seq T --hidden D [--ffn F] [--act gelu|gelu_tanh|relu] [--seed S] -o FILE\n"
    "                 [--tp P --rank R [--split balanced|chunk]]\n"
    "Writes a test-vector file (safetensors): the float32 inputs and the float64 reference\n"
    "outputs, byte for byte the same on every machine. Names and shapes: docs/vectors.md.\n"
    "  --ffn default 4 × hidden, --act default gelu, --seed default 0, --threads N (same bytes)\n"
    "  --tp P --rank R: rank R's inputs only (x, dy, linear_fc2.bias whole; its rows of\n"
    "  linear_fc1.weight and .bias, its columns of linear_fc2.weight), F cut by --split:\n"
    "  balanced (default: the first F mod P ranks one larger) or chunk (torch.chunk, DTensor)\n";

int cmd_gen(int argc, char **argv) {
    tpmlp_shape_args s = {.act = TPMLP_GELU, .seed = 0};
    const char *out = NULL;
    tpmlp_rank_args ra = {0, -1, TPMLP_SPLIT_BALANCED, 0};
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--help") == 0) {
            fputs(gen_usage, stdout);
            return 0;
        }
        if (args_shape_flag(&s, argc, argv, &i) || args_rank_flag(&ra, argc, argv, &i)) continue;
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
    args_rank_finish(&ra, 1);
    tpmlp_vec_dims d = {s.batch, s.seq, s.hidden, s.ffn, s.act, s.seed};
    char err[512];
    if (ra.tp) {
        if (tpmlp_split_check(ra.split, d.F, ra.tp, ra.rank, err, sizeof err) != 0)
            tpmlp_die(TPMLP_EXIT_USAGE, "%s", err);
        if (tpmlp_vec_generate_rank(out, &d, ra.tp, ra.rank, ra.split, err, sizeof err) != 0) tpmlp_die(1, "%s", err);
        return 0;
    }
    if (tpmlp_vec_generate(out, &d, err, sizeof err) != 0) tpmlp_die(1, "%s", err);
    return 0;
}

static void open_or_die(st_file *f, const char *path) {
    char err[512];
    if (st_open(f, path, err, sizeof err) != 0) tpmlp_die(TPMLP_EXIT_USAGE, "%s", err);
}

static const char check_usage[] =
    "usage: tpmlp check [--dtype fp32|tf32|bf16|fp16] [--tp P --rank R [--split balanced|chunk]]\n"
    "                   [--json | -q] [--dump FILE] VECTORS THEIRS\n"
    "Compares every output tensor in THEIRS (safetensors; F32, F64, BF16 or F16; the names of\n"
    "docs/vectors.md) with the float64 reference in VECTORS, element by element, within the\n"
    "bound of tpmlp's error model for arithmetic in --dtype (default fp32): docs/vectors.md.\n"
    "  --tp P --rank R   THEIRS holds rank R's tensors: h, a, the fc1 weight and bias and fc2\n"
    "                    weight gradients cut to its block of F; y, dx, linear_fc2.bias.grad\n"
    "                    whole; and y.partial, dx.partial, its sums before the all-reduce\n"
    "  --tp P            (no --rank) THEIRS holds the whole outputs of a P-way run: y and dx\n"
    "                    may carry the all-reduces' roundings too\n"
    "  --split S         how F is cut: balanced (default: the first F mod P ranks one larger)\n"
    "                    or chunk (torch.chunk, DTensor: ceil(F/P) each, the last smaller)\n"
    "  --json            one JSON object: per tensor the max |err|, budget used, worst index,\n"
    "                    verdict; the verdict, dtype, u, lambda and the tpmlp version\n"
    "  -q                print only the verdict line\n"
    "  --dump FILE       per element |theirs - reference| / bound (NAME) and the bound (NAME.bound)\n"
    "Exit 0: every tensor present passes; 1: some tensor fails (or none is present); 2: bad input.\n";

/* "[n, f]" for flat index k of a tensor of the given shape */
static void index_str(char *buf, size_t len, const uint64_t *shape, int nd, uint64_t k) {
    uint64_t idx[ST_MAX_DIMS];
    for (int i = nd - 1; i >= 0; i--) idx[i] = k % shape[i], k /= shape[i];
    size_t at = (size_t)snprintf(buf, len, "[");
    for (int i = 0; i < nd && at < len; i++)
        at += (size_t)snprintf(buf + at, len - at, "%s%llu", i ? "," : "", (unsigned long long)idx[i]);
    if (at < len) snprintf(buf + at, len - at, "]");
}

/* Tensor i is one THEIRS should hold: an output, or with --rank also a partial sum. */
static int expected(int i, const tpmlp_check_opts *o) {
    return tpmlp_check_knows((tpmlp_vec_id)i) && (tpmlp_vec_specs[i].role == TPMLP_ROLE_OUT || o->rank >= 0);
}

/* The table's id of THEIRS's tensor name, or -1 if check knows no such tensor. */
static int known_id(const char *name) {
    for (int k = 0; k < V_ALL; k++)
        if (tpmlp_check_knows((tpmlp_vec_id)k) && strcmp(name, tpmlp_vec_specs[k].name) == 0) return k;
    return -1;
}

static void print_json(const tpmlp_check_result *res, const st_file *theirs, const char *vec_path,
                       const tpmlp_check_opts *o) {
    printf("{\"tpmlp_version\": \"%s\", \"verdict\": \"%s\", \"dtype\": \"%s\", \"u\": %.9g, \"lambda\": %g, ",
           PACKAGE_VERSION, res->pass ? "PASS" : "FAIL", o->fmt->name, o->fmt->u, TPMLP_LAMBDA);
    printf("\"vectors\": "), json_str(vec_path), printf(", \"theirs\": "), json_str(theirs->path);
    if (o->tp && o->rank >= 0)
        printf(", \"tp\": %d, \"rank\": %d, \"split\": \"%s\", \"slice\": [%d, %d]", o->tp, o->rank,
               tpmlp_split_name(o->split), res->f0, res->f1);
    else if (o->tp)
        printf(", \"tp\": %d, \"rank\": null", o->tp);
    else
        printf(", \"tp\": null, \"rank\": null");
    printf(", \"checked\": %d, \"tensors\": [", res->present);
    int first = 1;
    for (int i = 0; i < V_ALL; i++) {
        const tpmlp_check_row *r = &res->rows[i];
        if (!r->present) continue;
        printf("%s\n  {\"name\": \"%s\", \"dtype\": \"%s\", \"shape\": ", first ? "" : ",", tpmlp_vec_specs[i].name,
               st_dtype_name(r->dtype));
        json_dims(r->shape, r->ndim);
        printf(", \"n\": %llu, \"max_abs_err\": ", (unsigned long long)r->n), json_num(r->max_abs_err);
        printf(", \"budget_used\": "), json_num(r->used);
        printf(", \"worst_index\": [");
        uint64_t k = r->worst, idx[ST_MAX_DIMS];
        for (int d = r->ndim - 1; d >= 0; d--) idx[d] = k % r->shape[d], k /= r->shape[d];
        for (int d = 0; d < r->ndim; d++) printf("%s%llu", d ? ", " : "", (unsigned long long)idx[d]);
        printf("], \"got\": "), json_num(r->worst_got), printf(", \"reference\": "), json_num(r->worst_ref);
        printf(", \"bound\": "), json_num(r->worst_bound);
        if (isfinite(r->beta_noise))
            printf(", \"form_beta\": "), json_num(r->beta), printf(", \"form_noise\": "), json_num(r->beta_noise);
        printf(", \"verdict\": \"%s\"", r->pass ? "PASS" : "FAIL");
        if (r->note[0]) printf(", \"note\": "), json_str(r->note);
        printf("}");
        first = 0;
    }
    printf("],\n \"not_provided\": [");
    first = 1;
    for (int i = 0; i < V_ALL; i++)
        if (!res->rows[i].present && expected(i, o))
            printf("%s\"%s\"", first ? "" : ", ", tpmlp_vec_specs[i].name), first = 0;
    printf("], \"ignored\": [");
    first = 1;
    for (int i = 0; i < theirs->ntensors; i++) {
        const int k = known_id(theirs->tensors[i].name);
        if (k < 0 || !expected(k, o)) printf("%s", first ? "" : ", "), json_str(theirs->tensors[i].name), first = 0;
    }
    printf("]}\n");
}

static void print_table(const tpmlp_check_result *res, const st_file *theirs, const char *vec_path,
                        const tpmlp_check_opts *o) {
    const tpmlp_vec_dims *d = &res->dims;
    printf("check %s against %s: B=%d T=%d D=%d F=%d act=%s, --dtype %s (u = 2^%d), λ=%g\n", theirs->path, vec_path,
           d->B, d->T, d->D, d->F, tpmlp_act_name(d->act), o->fmt->name, (int)log2(o->fmt->u), TPMLP_LAMBDA);
    if (o->tp && o->rank < 0)
        printf("the outputs of a %d-way tensor-parallel run: y and dx may carry the all-reduces' roundings\n", o->tp);
    if (o->tp && o->rank >= 0)
        printf("rank %d of %d (%s split): columns [%d, %d) of F, %d of %d\n", o->rank, o->tp,
               tpmlp_split_name(o->split), res->f0, res->f1, res->f1 - res->f0, d->F);
    /* fixed widths, but the worst element's column as wide as its widest index */
    int where_w = (int)strlen("worst element");
    for (int i = 0; i < V_ALL; i++) {
        char where[64];
        if (!res->rows[i].present) continue;
        index_str(where, sizeof where, res->rows[i].shape, res->rows[i].ndim, res->rows[i].worst);
        if ((int)strlen(where) > where_w) where_w = (int)strlen(where);
    }
    printf("  %-24s %-5s %10s %*s  %-*s %s\n", "tensor", "dtype", "max |err|", ARGS_SHARE_WIDTH, "budget", where_w,
           "worst element", "verdict");
    for (int i = 0; i < V_ALL; i++) {
        const tpmlp_check_row *r = &res->rows[i];
        if (!r->present) continue;
        char where[64], budget[24];
        index_str(where, sizeof where, r->shape, r->ndim, r->worst);
        args_share_str(budget, sizeof budget, r->used);
        printf("  %-24s %-5s %10.3e %*s  %-*s %s\n", tpmlp_vec_specs[i].name, st_dtype_name(r->dtype), r->max_abs_err,
               ARGS_SHARE_WIDTH, budget, where_w, where, r->pass ? "PASS" : "FAIL");
        if (r->used > 1.0)
            printf("      worst: got %.9g, reference %.9g, bound %.3g%s\n", r->worst_got, r->worst_ref, r->worst_bound,
                   isfinite(r->worst_got) ? "" : " (NaN or Inf never passes)");
        if (r->note[0]) printf("      %s\n", r->note);
    }
    int missing = 0;
    for (int i = 0; i < V_ALL; i++)
        if (!res->rows[i].present && expected(i, o))
            printf("%s%s", missing++ ? ", " : "  not provided: ", tpmlp_vec_specs[i].name);
    if (missing) printf("\n");
    for (int i = 0; i < theirs->ntensors; i++) {
        const int k = known_id(theirs->tensors[i].name);
        if (k < 0 || !expected(k, o))
            printf("  ignored (%s): %s\n", k >= 0 ? "checked only with --tp --rank" : "not a vector name",
                   theirs->tensors[i].name);
    }
}

static void print_verdict(const tpmlp_check_result *res, const char *theirs_path, const tpmlp_check_opts *o) {
    if (res->present == 0)
        printf("FAIL: %s holds none of the output tensors\n", theirs_path);
    else if (o->tp && o->rank >= 0)
        printf("%s: rank %d of %d, %d tensor%s checked\n", res->pass ? "PASS" : "FAIL", o->rank, o->tp, res->present,
               tpmlp_plural(res->present));
    else
        printf("%s: %d of %d tensors checked\n", res->pass ? "PASS" : "FAIL", res->present, V_COUNT - V_FIRST_OUTPUT);
}

/* Checks THEIRS against VECTORS and prints the table (or JSON, or the verdict
 * alone); returns 0 (all pass) or 1; bad input ends the program with 2. */
static int report_check(const char *vec_path, const char *theirs_path, const tpmlp_check_opts *o, const char *dump,
                        int mode) {
    st_file vec, theirs;
    open_or_die(&vec, vec_path);
    open_or_die(&theirs, theirs_path);
    tpmlp_check_result res;
    char err[512];
    if (tpmlp_check(&res, &vec, &theirs, o, dump, err, sizeof err) != 0) tpmlp_die(TPMLP_EXIT_USAGE, "%s", err);
    if (mode == 'j')
        print_json(&res, &theirs, vec_path, o);
    else {
        if (mode != 'q') print_table(&res, &theirs, vec_path, o);
        print_verdict(&res, theirs_path, o);
    }
    st_close(&vec), st_close(&theirs);
    return res.present > 0 && res.pass ? 0 : 1;
}

static const tpmlp_format *dtype_or_die(const char *v) {
    if (v == NULL) tpmlp_die(TPMLP_EXIT_USAGE, "--dtype: missing value (allowed: fp32, tf32, bf16, fp16)");
    const tpmlp_format *f = tpmlp_format_find(v);
    if (f == NULL) tpmlp_die(TPMLP_EXIT_USAGE, "--dtype: '%s' is not one of fp32, tf32, bf16, fp16", v);
    return f;
}

int cmd_check(int argc, char **argv) {
    const char *files[2] = {NULL, NULL}, *dump = NULL;
    tpmlp_check_opts o = {tpmlp_format_find("fp32"), 0, -1, TPMLP_SPLIT_BALANCED};
    tpmlp_rank_args ra = {0, -1, TPMLP_SPLIT_BALANCED, 0};
    int nfiles = 0, mode = 't', mode_flags = 0;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--help") == 0) {
            fputs(check_usage, stdout);
            return 0;
        }
        if (args_rank_flag(&ra, argc, argv, &i)) continue;
        if (strcmp(argv[i], "--dtype") == 0) {
            o.fmt = dtype_or_die(i + 1 < argc ? argv[++i] : NULL);
            continue;
        }
        if (strcmp(argv[i], "--json") == 0 || strcmp(argv[i], "-q") == 0) {
            mode = argv[i][1] == 'q' ? 'q' : 'j', mode_flags++;
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
    args_rank_finish(&ra, 0);
    if (mode_flags > 1) tpmlp_die(TPMLP_EXIT_USAGE, "check: --json and -q are two answers; give one");
    o.tp = ra.tp, o.rank = ra.rank, o.split = ra.split;
    if (strcmp(files[0], files[1]) == 0)
        tpmlp_die(TPMLP_EXIT_USAGE, "check: VECTORS and THEIRS are the same file '%s'", files[0]);
    return report_check(files[0], files[1], &o, dump, mode);
}

static const char run_usage[] =
    "usage: tpmlp run --stage STAGE [--tp P] VECTORS -o OUT [--threads N]\n"
    "                 [--dtype fp32|tf32|bf16]   (cuda and nccl; the CPU stages compute in fp32)\n"
    "                 [--rank-outputs DIR]   (shard, mpi, ring: each rank also writes DIR/rank-R.safetensors,\n"
    "                 its own tensors for tpmlp check --tp P --rank R)\n"
    "                 [--overlap on|off]   (shard, mpi, ring, cuda, nccl: dX's all-reduce while the\n"
    "                 weight gradients are computed; default on)\n"
    "                 [--lt] [--launch mpi|local]   (cuda and nccl stages)\n"
    "Runs a stage on a vector file's inputs, writes its outputs under the vector names (F32) and\n"
    "prints their check against VECTORS (exit 1 if any fails). Stages:\n"
    "  reference  the float32 MLP in one process\n"
    "  shard      P ranks as threads of one process, summing their partial outputs\n"
    "  mpi        P processes, MPI_Allreduce; started without mpiexec, tpmlp starts the P ranks\n"
    "             itself (on this machine; mpiexec -n P --host ... to span machines)\n"
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
                            const char *launch, int overlap) {
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
    const char *args[20];
    int k = 0;
    args[k++] = prog;
    if (nccl) args[k++] = "--nccl", args[k++] = "--launch", args[k++] = launch;
    if (lt) args[k++] = "--lt";
    args[k++] = "--tp", args[k++] = tp, args[k++] = "--dtype", args[k++] = dtype;
    args[k++] = "--overlap", args[k++] = overlap ? "on" : "off";
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
    const char *stage = NULL, *in = NULL, *out = NULL, *dtype = "fp32", *launch = "mpi", *rank_dir = NULL;
    int p = 1, lt = 0, dtype_given = 0, overlap = 1, overlap_given = 0;
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
            dtype = v, dtype_given = 1, i++;
        } else if (strcmp(argv[i], "--tp") == 0) {
            p = args_positive_int("--tp", v), i++;
        } else if (strcmp(argv[i], "--rank-outputs") == 0) {
            if (v == NULL) tpmlp_die(TPMLP_EXIT_USAGE, "--rank-outputs: missing folder name");
            rank_dir = v, i++;
        } else if (strcmp(argv[i], "--overlap") == 0) {
            overlap = args_on_off("--overlap", v), overlap_given = 1, i++;
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
    if (overlap_given && (strcmp(stage, "reference") == 0 || strcmp(stage, "sequence") == 0))
        tpmlp_die(TPMLP_EXIT_USAGE, "--overlap: for the shard, mpi, ring, cuda and nccl stages (got --stage %s)",
                  stage);
    if (rank_dir && strcmp(stage, "shard") != 0 && strcmp(stage, "mpi") != 0 && strcmp(stage, "ring") != 0)
        tpmlp_die(TPMLP_EXIT_USAGE, "--rank-outputs: for the shard, mpi and ring stages (got --stage %s)", stage);
    struct stat sb;
    if (rank_dir && (stat(rank_dir, &sb) != 0 || !S_ISDIR(sb.st_mode) || access(rank_dir, W_OK) != 0))
        tpmlp_die(TPMLP_EXIT_USAGE, "--rank-outputs: '%s' is not a folder this program can write to", rank_dir);
    if (!gpu_stage && dtype_given)
        tpmlp_die(TPMLP_EXIT_USAGE, "--dtype %s: the %s stage computes in fp32 only (--dtype is for cuda and nccl)",
                  dtype, stage);
    if (strcmp(stage, "reference") == 0 || strcmp(stage, "shard") == 0 || strcmp(stage, "cuda") == 0) {
        const char *ws = getenv("OMPI_COMM_WORLD_SIZE") ? getenv("OMPI_COMM_WORLD_SIZE") : getenv("PMI_SIZE");
        if (ws && atoi(ws) > 1)
            tpmlp_die(TPMLP_EXIT_USAGE,
                      "--stage %s runs in one process, but this is one of %s started by mpiexec (run it without "
                      "mpiexec, or use --stage mpi)",
                      stage, ws);
    }
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
        rc = run_cuda_program(in, out, dtype, p, nccl, lt, launch, overlap);
        if (rc == 77) return 1; /* no GPU: it said so */
        if (rc != 0) return rc;
        if (nccl && getenv("OMPI_COMM_WORLD_RANK") && atoi(getenv("OMPI_COMM_WORLD_RANK")) != 0) return 0;
        const tpmlp_check_opts o = {dtype_or_die(dtype), p > 1 ? p : 0, -1, TPMLP_SPLIT_BALANCED};
        return report_check(in, out, &o, NULL, 't');
    } else if (strcmp(stage, "shard") == 0) {
        rc = stage_shard(in, out, p, overlap, rank_dir, err, sizeof err);
    } else if (strcmp(stage, "mpi") == 0 || strcmp(stage, "ring") == 0 || strcmp(stage, "sequence") == 0) {
#ifdef TPMLP_HAVE_MPI
        launch_ranks(p, argc, argv); /* typed at a shell: start the p ranks, as torchrun does */
        rc = stage_mpi(stage, in, out, p, overlap, rank_dir, &root, err, sizeof err);
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
    const tpmlp_check_opts o = {tpmlp_format_find("fp32"), p > 1 ? p : 0, -1, TPMLP_SPLIT_BALANCED};
    return report_check(in, out, &o, NULL, 't');
}
