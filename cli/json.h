/* The little JSON the commands print (check --json, info --json). */
#ifndef TPMLP_CLI_JSON_H
#define TPMLP_CLI_JSON_H

#include <stdint.h>

void json_str(const char *s);                    /* a string, escaped as JSON requires */
void json_num(double v);                         /* %.9g; null for NaN or Inf (JSON has neither) */
void json_dims(const uint64_t *shape, int ndim); /* [d0, d1, ...] */

#endif
