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

#include "check.h"
/* cli/check.c, for run too: checks THEIRS against VECTORS and prints the
 * table (mode 't'), the JSON ('j') or the verdict alone ('q'); returns 0 (all
 * pass) or 1; bad input ends the program with 2. */
int check_report(const char *vectors, const char *theirs, const tpmlp_check_opts *o, const char *dump, int mode);
/* The arithmetic --dtype names (fp32, tf32, bf16, fp16), or dies naming the flag. */
const tpmlp_format *check_format_or_die(const char *dtype);
/* The CPU stages (cli/stages.c). 0 done, 1 failed while running, 2 bad input (err has one line). */
int stage_shard(const char *vectors, const char *out, int p, int overlap, const char *rank_dir, char *err,
                size_t errlen);
/* mpi, ring or sequence: this process is one rank of MPI_COMM_WORLD (of size p); *root on rank 0 */
int stage_mpi(const char *stage, const char *vectors, const char *out, int p, int overlap, const char *rank_dir,
              int *root, char *err, size_t errlen);
#endif
