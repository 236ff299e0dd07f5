#ifndef TPMLP_COMMANDS_H
#define TPMLP_COMMANDS_H
/* argv[0] is the sub-command's name. Return the process exit code. */
int cmd_demo(int argc, char **argv);
int cmd_bench(int argc, char **argv);
int cmd_gen(int argc, char **argv);
int cmd_info(int argc, char **argv);
int cmd_check(int argc, char **argv);
int cmd_run(int argc, char **argv);
#endif
