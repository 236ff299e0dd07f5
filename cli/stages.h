/* The stages of `tpmlp run` (and of `tpmlp bench --stage`): the one table of
 * them, which says what each stage is, which backends and program run it and
 * which of run's options it takes. run's checks, its --help and its error
 * messages are drawn from it. */
#ifndef TPMLP_CLI_STAGES_H
#define TPMLP_CLI_STAGES_H

#include <stddef.h>

enum {
    STAGE_TP = 1 << 0,           /* --tp P: more than one rank */
    STAGE_DTYPE = 1 << 1,        /* --dtype tf32|bf16 (the CPU stages compute in fp32) */
    STAGE_RANK_OUTPUTS = 1 << 2, /* --rank-outputs DIR: each rank's own file */
    STAGE_OVERLAP = 1 << 3,      /* --overlap on|off */
    STAGE_LT = 1 << 4,           /* --lt: cuBLASLt's epilogues */
    STAGE_LAUNCH = 1 << 5,       /* --launch mpi|local */
    STAGE_ONE_PROCESS = 1 << 6,  /* one process: refused as one of several that mpiexec started */
    STAGE_MPI = 1 << 7,          /* one MPI process per rank, started here when typed at a shell */
    STAGE_GPU = 1 << 8,          /* run by the program tpmlp-cuda beside tpmlp */
    STAGE_BENCH = 1 << 9,        /* tpmlp bench --stage times it */
};

typedef struct {
    const char *name;
    const char *backends; /* compute, communicator */
    unsigned takes;       /* STAGE_* */
    const char *help;     /* its lines of `tpmlp run --help` */
} tpmlp_stage;

extern const tpmlp_stage tpmlp_stages[];
extern const int tpmlp_nstages;

/* The stage of that name, or NULL. */
const tpmlp_stage *stage_find(const char *name);
/* The names of the stages that take every bit of mask, in the table's order,
 * separated by ", " and before the last by last (", " or " and "). */
void stage_names(char *buf, size_t len, unsigned mask, const char *last);

#endif
