/* The launcher: tpmlp's multi-process stages started without mpiexec. */
#include "config.h"

#include "launch.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "args.h"
#include "util.h"

int launch_under_mpi(void) {
    /* Open MPI, MPICH/Hydra and PMIx or PMI-2 launchers (prterun; Slurm's srun
     * with --mpi=pmix or pmi2) each give every rank its place in the job
     * through the environment. srun without a PMI plugin sets none of these:
     * there, start the ranks with mpiexec inside the allocation. */
    static const char *const vars[] = {"OMPI_COMM_WORLD_SIZE", "PMI_SIZE", "PMIX_RANK", "PMI_RANK"};
    for (size_t i = 0; i < sizeof vars / sizeof vars[0]; i++)
        if (getenv(vars[i])) return 1;
    return 0;
}

#ifdef TPMLP_MPIEXEC
/* Sets name=value for the job unless the user has set name already. */
static void setenv_default(const char *name, const char *value) {
    if (setenv(name, value, 0) != 0) tpmlp_die(1, "launch: cannot set %s in the environment", name);
}
#endif

void launch_ranks(int p, int argc, char **argv) {
    if (p <= 1 || launch_under_mpi()) return;
#ifndef TPMLP_MPIEXEC
    (void)argc, (void)argv; /* no launcher: the stage says it was built without MPI */
#else
    /* a rank that sees none of the variables above would start a job of its
     * own, and so on: the launcher did not say who its ranks are */
    if (getenv("TPMLP_LAUNCHED"))
        tpmlp_die(1,
                  "launch: started by %s, but this process is not one of its ranks (it set none of "
                  "OMPI_COMM_WORLD_SIZE, PMI_SIZE, PMIX_RANK, PMI_RANK); run the ranks with mpiexec -n %d yourself",
                  TPMLP_MPIEXEC, p);
    const char *mpiexec = getenv("TPMLP_MPIEXEC") ? getenv("TPMLP_MPIEXEC") : TPMLP_MPIEXEC;
    char self[4096];
    ssize_t n = readlink("/proc/self/exe", self, sizeof self - 1);
    if (n <= 0) tpmlp_die(1, "launch: cannot find this program (/proc/self/exe): %s", strerror(errno));
    self[n] = '\0';
    char np[16];
    snprintf(np, sizeof np, "%d", p);
    char **args = tpmlp_alloc((size_t)argc + 5, sizeof *args, "launch arguments");
    int k = 0;
    args[k++] = (char *)mpiexec, args[k++] = "-n", args[k++] = np, args[k++] = self;
    for (int i = 0; i < argc; i++) args[k++] = argv[i];
    args[k] = NULL;

    /* One machine, p ranks: the launcher's defaults are for clusters. Open MPI
     * refuses root unless told twice (containers run as root), and refuses
     * more ranks than cores unless oversubscribing is allowed (a laptop with
     * 2 cores can run --tp 4; ranks then share cores, which is slow, not
     * wrong). Its closing banner about a rank's non-zero exit repeats what
     * the rank said: quiet. The variables are Open MPI's (4 and 5); other
     * launchers ignore them. A value the user set wins. */
    if (geteuid() == 0) {
        setenv_default("OMPI_ALLOW_RUN_AS_ROOT", "1");
        setenv_default("OMPI_ALLOW_RUN_AS_ROOT_CONFIRM", "1");
    }
    setenv_default("OMPI_MCA_rmaps_base_oversubscribe", "1");
    setenv_default("PRTE_MCA_rmaps_default_mapping_policy", ":oversubscribe");
    setenv_default("OMPI_MCA_orte_execute_quiet", "1");
    setenv_default("TPMLP_LAUNCHED", np);

    fflush(NULL);
    execvp(mpiexec, args); /* the job's exit status becomes this command's; a bare name is looked up in PATH */
    tpmlp_die(
        1, "launch: cannot run %s: %s (set TPMLP_MPIEXEC to the MPI launcher, or start the ranks with mpiexec -n %d)",
        mpiexec, strerror(errno), p);
#endif
}

#ifdef TPMLP_HAVE_MPI
#include <cblas.h>
#include <mpi.h>
#include <omp.h>

#include "comm_mpi.h"

/* Threads for this rank: the node's cores shared among the ranks on it
 * (Open MPI says how many there are; other launchers: one each). */
static void threads_from_local_rank(void) {
    const char *ls = getenv("OMPI_COMM_WORLD_LOCAL_SIZE");
    long cores = sysconf(_SC_NPROCESSORS_ONLN), local = ls ? atol(ls) : 1;
    int t = (int)(local > 0 && cores / local > 1 ? cores / local : 1);
    openblas_set_num_threads(t);
    omp_set_num_threads(t);
}

int launch_mpi_init(int *rank, int *size) {
    int provided;
    if (MPI_Init_thread(NULL, NULL, MPI_THREAD_FUNNELED, &provided) != MPI_SUCCESS) return -1;
    if (comm_mpi_check(MPI_Comm_rank(MPI_COMM_WORLD, rank), "mpi", "MPI_Comm_rank") ||
        comm_mpi_check(MPI_Comm_size(MPI_COMM_WORLD, size), "mpi", "MPI_Comm_size"))
        return -1;
    threads_from_local_rank();
    return 0;
}
#endif
