/* tpmlp: the command-line entry point. Each sub-command lives in its own file
 * and has --help. */
#include "config.h"

#include <cblas.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "args.h"
#include "commands.h"
#include "util.h"

static const struct {
    const char *name;
    int (*run)(int argc, char **argv);
    const char *what;
} commands[] = {
    {"demo", cmd_demo, "run the reference MLP on a default shape and print what was verified"},
    {"bench", cmd_bench, "time the reference fwd+bwd against its GEMMs alone"},
    {"gen", cmd_gen, "write a test-vector file (inputs and float64 reference outputs)"},
    {"info", cmd_info, "print a vector file's metadata and tensors"},
    {"run", cmd_run, "run a stage on a vector file's inputs, writing its outputs"},
    {"check", cmd_check, "check another implementation's outputs against a vector file"},
};
#define NCOMMANDS (sizeof commands / sizeof commands[0])

static void usage(FILE *out) {
    fprintf(out, "usage: tpmlp COMMAND [OPTIONS]   (tpmlp COMMAND --help for its options)\n"
                 "       tpmlp --version\n\ncommands:\n");
    for (size_t i = 0; i < NCOMMANDS; i++) fprintf(out, "  %-8s %s\n", commands[i].name, commands[i].what);
}

/* OpenBLAS built on pthreads (Debian's default libopenblas0) has a thread
 * pool of its own beside OpenMP's, which runs the passes between the GEMMs
 * (bias + GELU, the bias gradients). Each pool keeps its idle threads
 * spinning: OpenBLAS's for about 2^28 cycles (0.1 s) after a call, libgomp's
 * for a while after a parallel region. On a machine with as many threads as
 * cores, the spinning pool then takes cores from the working one.
 * OPENBLAS_THREAD_TIMEOUT=4 and OMP_WAIT_POLICY=passive make both sleep at
 * once, but the libraries read them only when they load: set them and start
 * again, once. (The OpenMP build of OpenBLAS shares libgomp's pool with the
 * passes: nothing to do.) Values the user set win. */
static void one_pool_at_a_time(char **argv) {
    if (openblas_get_parallel() != 1 || getenv("OPENBLAS_THREAD_TIMEOUT")) return;
    if (setenv("OPENBLAS_THREAD_TIMEOUT", "4", 1) != 0 || setenv("OMP_WAIT_POLICY", "passive", 0) != 0)
        return; /* then only slower */
    execv("/proc/self/exe", argv);
}

int main(int argc, char **argv) {
    one_pool_at_a_time(argv);
    if (argc < 2) {
        fputs("tpmlp: missing command (tpmlp --help lists them)\n", stderr);
        return TPMLP_EXIT_USAGE;
    }
    if (strcmp(argv[1], "--version") == 0) {
        printf("tpmlp %s\n", PACKAGE_VERSION);
        return 0;
    }
    if (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0 || strcmp(argv[1], "help") == 0) {
        usage(stdout);
        return 0;
    }
    /* progress of long work (gen, bench, check) for a person watching, never
     * in a log or a pipe; under an MPI launcher stderr is a pipe */
    tpmlp_progress_enable(isatty(STDERR_FILENO));
    for (size_t i = 0; i < NCOMMANDS; i++)
        if (strcmp(argv[1], commands[i].name) == 0) return commands[i].run(argc - 1, argv + 1);
    fprintf(stderr, "tpmlp: '%s' is not a command (tpmlp --help lists them)\n", argv[1]);
    return TPMLP_EXIT_USAGE;
}
