/* Small helpers that check and die with one line naming what failed. */
#ifndef TPMLP_UTIL_H
#define TPMLP_UTIL_H

#ifdef __cplusplus
extern "C" { /* the CUDA host code (C++) links against these */
#endif

#include <stddef.h>

/* Prints "tpmlp: <message>" on stderr and exits with status code. */
#ifdef __cplusplus
#define TPMLP_NORETURN [[noreturn]]
#else
#define TPMLP_NORETURN _Noreturn
#endif
TPMLP_NORETURN void tpmlp_die(int code, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* malloc of count × size bytes, 64-byte aligned (AVX-512 lines); dies naming
 * what on overflow or failure. Free with free(). */
void *tpmlp_alloc(size_t count, size_t size, const char *what);

/* a·b·c without overflow; returns 0 and sets *out, or -1 on overflow. */
int tpmlp_mul3(size_t a, size_t b, size_t c, size_t *out);

/* "" or "s": "%d rank%s", n, tpmlp_plural(n) reads "1 rank", "2 ranks". */
static inline const char *tpmlp_plural(long long n) { return n == 1 ? "" : "s"; }

/* Progress of long work, for a person at a terminal. Off until the program
 * turns it on (tpmlp_progress_enable: the tpmlp commands do when stderr is a
 * terminal); then tpmlp_progress overwrites one line of stderr with
 * "tpmlp: what (step of steps)..." and tpmlp_progress_done clears it. Output
 * and logs never see it. */
void tpmlp_progress_enable(int on);
void tpmlp_progress(const char *what, int step, int steps);
void tpmlp_progress_done(void);

/* Monotonic seconds. */
double tpmlp_now(void);

/* Deterministic uniform floats in [-scale, scale) from a 64-bit seed
 * (splitmix64): the same on every machine. */
void tpmlp_fill_uniform_f32(float *out, size_t n, unsigned long long seed, float scale);

#ifdef __cplusplus
}
#endif

#endif
