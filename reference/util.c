#include "config.h"

#include "util.h"

#include <errno.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

void tpmlp_die(int code, const char *fmt, ...) {
    tpmlp_progress_done(); /* the message on a line of its own */
    va_list ap;
    va_start(ap, fmt);
    fputs("tpmlp: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
    exit(code);
}

int tpmlp_mul3(size_t a, size_t b, size_t c, size_t *out) {
    if (a != 0 && b > SIZE_MAX / a) return -1;
    size_t ab = a * b;
    if (ab != 0 && c > SIZE_MAX / ab) return -1;
    *out = ab * c;
    return 0;
}

void *tpmlp_alloc(size_t count, size_t size, const char *what) {
    size_t bytes;
    if (tpmlp_mul3(count, size, 1, &bytes) != 0)
        tpmlp_die(1, "%s: %zu × %zu bytes overflows size_t", what, count, size);
    if (bytes == 0) bytes = 1;
    /* aligned_alloc wants a multiple of the alignment */
    size_t rounded = (bytes + 63) / 64 * 64;
    if (rounded < bytes) tpmlp_die(1, "%s: %zu bytes is too large", what, bytes);
    void *p = aligned_alloc(64, rounded);
    if (p == NULL) tpmlp_die(1, "%s: cannot allocate %zu bytes", what, rounded);
    return p;
}

static int progress_on, progress_shown;

void tpmlp_progress_enable(int on) { progress_on = on; }

void tpmlp_progress(const char *what, int step, int steps) {
    if (!progress_on) return;
    /* \r and erase-to-end-of-line: the line is rewritten in place */
    fprintf(stderr, "\r\033[Ktpmlp: %s (%d of %d)...", what, step, steps);
    fflush(stderr);
    progress_shown = 1;
}

void tpmlp_progress_done(void) {
    if (!progress_shown) return;
    fputs("\r\033[K", stderr);
    fflush(stderr);
    progress_shown = 0;
}

double tpmlp_now(void) {
    struct timespec t;
    if (clock_gettime(CLOCK_MONOTONIC, &t) != 0) tpmlp_die(1, "clock_gettime failed");
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

static uint64_t splitmix64(uint64_t *state) {
    uint64_t z = (*state += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

void tpmlp_fill_uniform_f32(float *out, size_t n, unsigned long long seed, float scale) {
    uint64_t s = seed;
    for (size_t i = 0; i < n; i++) {
        /* 24 random bits -> [0,1) exactly representable, then to [-scale, scale) */
        float u = (float)(splitmix64(&s) >> 40) * 0x1p-24f;
        out[i] = (2.0f * u - 1.0f) * scale;
    }
}
