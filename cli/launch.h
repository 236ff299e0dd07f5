/* Starting a multi-process stage's ranks, as torchrun does: `tpmlp run
 * --stage mpi --tp 4 ...` typed at a shell (not under an MPI launcher) starts
 * the MPI launcher itself, which starts 4 copies of the same command line.
 * Under mpiexec (a job already, on one node or many) nothing changes. */
#ifndef TPMLP_LAUNCH_H
#define TPMLP_LAUNCH_H

/* Whether this process is one rank of a job an MPI launcher started. */
int launch_under_mpi(void);

/* For p > 1 outside an MPI job: runs this program's sub-command argv (argv[0]
 * is the sub-command) as p ranks under the MPI launcher tpmlp was built with,
 * in place of this process (exec: the job's exit status is this command's).
 * Returns only when this process runs the stage itself: p == 1, already a
 * rank, or built without MPI. The job it starts may run as root and have more
 * ranks than cores. */
void launch_ranks(int p, int argc, char **argv);

#ifdef TPMLP_HAVE_MPI
/* This process as one rank of MPI_COMM_WORLD: MPI_Init, its rank and the
 * job's size, and its share of the node's cores for OpenBLAS and OpenMP.
 * 0, or -1 if MPI cannot start. */
int launch_mpi_init(int *rank, int *size);
#endif

#endif
