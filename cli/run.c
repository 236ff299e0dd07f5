/* tpmlp run: one stage on a vector file's inputs, its outputs written and
 * checked. The stages are the table of stages.h; the CPU ones run in
 * stages.c, the GPU ones in the program tpmlp-cuda. */
#include "config.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "args.h"
#include "commands.h"
#include "launch.h"
#include "stages.h"
#include "util.h"
#include "vectors.h"

/* run --help: the options, and which stages take each, from the table */
static void run_help(void) {
    char dt[64], rk[64], ov[96], lt[64];
    stage_names(dt, sizeof dt, STAGE_DTYPE, " and "), stage_names(rk, sizeof rk, STAGE_RANK_OUTPUTS, ", ");
    stage_names(ov, sizeof ov, STAGE_OVERLAP, ", "), stage_names(lt, sizeof lt, STAGE_LT, " and ");
    printf("usage: tpmlp run --stage STAGE [--tp P] VECTORS -o OUT [--threads N]\n"
           "                 [--dtype fp32|tf32|bf16]   (%s; the CPU stages compute in fp32)\n"
           "                 [--rank-outputs DIR]   (%s: each rank also writes DIR/rank-R.safetensors,\n"
           "                 its own tensors for tpmlp check --tp P --rank R)\n"
           "                 [--overlap on|off]   (%s: dX's all-reduce while the\n"
           "                 weight gradients are computed; default on)\n"
           "                 [--lt] [--launch mpi|local]   (%s stages)\n"
           "Runs a stage on a vector file's inputs, writes its outputs under the vector names (F32) and\n"
           "prints their check against VECTORS (exit 1 if any fails). Stages:\n",
           dt, rk, ov, lt);
    for (int i = 0; i < tpmlp_nstages; i++) printf("  %-10s %s", tpmlp_stages[i].name, tpmlp_stages[i].help);
}

/* Dies unless stage st takes the option flag (given): "FLAG: for the ... stages". */
static void stage_takes(const tpmlp_stage *st, unsigned what, int given, const char *flag) {
    if (!given || (st->takes & what)) return;
    char names[96];
    stage_names(names, sizeof names, what, " and ");
    tpmlp_die(TPMLP_EXIT_USAGE, "%s: for the %s stage%s (got --stage %s)", flag, names, strchr(names, ' ') ? "s" : "",
              st->name);
}

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
            run_help();
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
        } else if (strcmp(argv[i], "-o") == 0) {
            out = args_output("-o", v), i++;
        } else if (strcmp(argv[i], "--stage") == 0) {
            if (v == NULL) tpmlp_die(TPMLP_EXIT_USAGE, "%s: missing value", argv[i]);
            stage = v, i++;
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
    const tpmlp_stage *st = stage_find(stage);
    if (st == NULL) {
        char all[128];
        stage_names(all, sizeof all, 0, ", ");
        tpmlp_die(TPMLP_EXIT_USAGE, "--stage: '%s' is not a stage (allowed: %s)", stage, all);
    }
    if (p != 1 && !(st->takes & STAGE_TP))
        tpmlp_die(TPMLP_EXIT_USAGE, "--tp: the %s stage runs on one rank (got %d)", stage, p);
    stage_takes(st, STAGE_LT, lt, "--lt");
    stage_takes(st, STAGE_LAUNCH, strcmp(launch, "mpi") != 0, "--launch");
    stage_takes(st, STAGE_OVERLAP, overlap_given, "--overlap");
    stage_takes(st, STAGE_RANK_OUTPUTS, rank_dir != NULL, "--rank-outputs");
    struct stat sb;
    if (rank_dir && (stat(rank_dir, &sb) != 0 || !S_ISDIR(sb.st_mode) || access(rank_dir, W_OK) != 0))
        tpmlp_die(TPMLP_EXIT_USAGE, "--rank-outputs: '%s' is not a folder this program can write to", rank_dir);
    if (dtype_given && !(st->takes & STAGE_DTYPE)) {
        char names[64];
        stage_names(names, sizeof names, STAGE_DTYPE, " and ");
        tpmlp_die(TPMLP_EXIT_USAGE, "--dtype %s: the %s stage computes in fp32 only (--dtype is for %s)", dtype, stage,
                  names);
    }
    if (st->takes & STAGE_ONE_PROCESS) {
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
        st_file vec;
        args_open_or_die(&vec, in);
        rc = tpmlp_run_reference_file(&vec, out, err, sizeof err) == 0 ? 0 : 1;
        st_close(&vec);
    } else if (st->takes & STAGE_GPU) {
        int nccl = strcmp(stage, "nccl") == 0;
        rc = run_cuda_program(in, out, dtype, p, nccl, lt, launch, overlap);
        if (rc == 77) return 1; /* no GPU: it said so */
        if (rc != 0) return rc;
        if (nccl && getenv("OMPI_COMM_WORLD_RANK") && atoi(getenv("OMPI_COMM_WORLD_RANK")) != 0) return 0;
        const tpmlp_check_opts o = {check_format_or_die(dtype), p > 1 ? p : 0, -1, TPMLP_SPLIT_BALANCED};
        return check_report(in, out, &o, NULL, 't');
    } else if (st->takes & STAGE_MPI) {
#ifdef TPMLP_HAVE_MPI
        launch_ranks(p, argc, argv); /* typed at a shell: start the p ranks, as torchrun does */
        rc = stage_mpi(stage, in, out, p, overlap, rank_dir, &root, err, sizeof err);
#else
        tpmlp_die(TPMLP_EXIT_USAGE, "--stage %s: this tpmlp was built without MPI (install libopenmpi-dev)", stage);
#endif
    } else {
        rc = stage_shard(in, out, p, overlap, rank_dir, err, sizeof err);
    }
    if (rc != 0) {
        if (root && err[0]) fprintf(stderr, "tpmlp: %s\n", err); /* (the mpi stages print their own) */
        return rc;
    }
    if (!root) return 0;
    printf("stage %s, p = %d: outputs written to %s\n", stage, p, out);
    const tpmlp_check_opts o = {tpmlp_format_find("fp32"), p > 1 ? p : 0, -1, TPMLP_SPLIT_BALANCED};
    return check_report(in, out, &o, NULL, 't');
}
