#ifndef TPMLP_COMMANDS_H
#define TPMLP_COMMANDS_H
/* argv[0] is the sub-command's name. Return the process exit code. */
int cmd_demo(int argc, char **argv);
int cmd_bench(int argc, char **argv);
int cmd_gen(int argc, char **argv);
int cmd_info(int argc, char **argv);
int cmd_check(int argc, char **argv);
int cmd_run(int argc, char **argv);

#include <stddef.h>
/* The CPU stages (cli/stages.c). 0 done, 1 failed while running, 2 bad input (err has one line). */
int stage_shard(const char *vectors, const char *out, int p, int overlap, const char *rank_dir, char *err,
                size_t errlen);
/* mpi, ring or sequence: this process is one rank of MPI_COMM_WORLD (of size p); *root on rank 0 */
int stage_mpi(const char *stage, const char *vectors, const char *out, int p, int overlap, const char *rank_dir,
              int *root, char *err, size_t errlen);
#endif
