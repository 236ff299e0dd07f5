/* The oracle's matrix product (seqgemm.h): the loop structure of a
 * Goto-style GEMM (panels of B and A packed for the cache, a small register
 * tile of C updated by a micro-kernel), keeping the one property a BLAS does
 * not: each C element's sum runs over k from 0 in increasing order. */
#include "config.h"

#include "seqgemm.h"

#include <stdlib.h>
#include <string.h>

#include "util.h"

/* The bits depend on every product being rounded before it is added: the
 * build passes -ffp-contract=off (Makefile.am), and fast-math would reorder
 * the sums. */
#ifdef __FAST_MATH__
#error "seqgemm.c must not be built with -ffast-math: the oracle's sums would change order"
#endif

/* Register tile MR×NR; blocks of k (KC), rows of A (MC) and columns of B (NC)
 * sized for the caches. None of them changes a bit of the result. */
enum { MR = 4, NR = 8, KC = 256, MC = 128, NC = 2048 };

/* Four doubles, loaded from and stored to 8-byte-aligned memory. */
typedef double v4d __attribute__((vector_size(32), aligned(8)));

/* The micro-kernel, compiled twice: with AVX2 (4 doubles per instruction)
 * and for any x86-64, picked when the program starts. Only how many lanes one
 * instruction handles differs; every lane is the same IEEE product and sum. */
#if defined(__x86_64__) && defined(__has_attribute)
#if __has_attribute(target_clones)
#define SEQ_CLONES __attribute__((target_clones("avx2", "default")))
#endif
#endif
#ifndef SEQ_CLONES
#define SEQ_CLONES
#endif

/* c[r·ldc + j] += Σ_k ap[k·MR + r]·bp[k·NR + j] over k = 0..kc-1 in order,
 * for the MR×NR tile at c. */
SEQ_CLONES static void tile(int kc, const double *restrict ap, const double *restrict bp, double *restrict c,
                            size_t ldc) {
    v4d c00, c01, c10, c11, c20, c21, c30, c31;
    memcpy(&c00, c, 32), memcpy(&c01, c + 4, 32);
    memcpy(&c10, c + ldc, 32), memcpy(&c11, c + ldc + 4, 32);
    memcpy(&c20, c + 2 * ldc, 32), memcpy(&c21, c + 2 * ldc + 4, 32);
    memcpy(&c30, c + 3 * ldc, 32), memcpy(&c31, c + 3 * ldc + 4, 32);
    for (int k = 0; k < kc; k++, ap += MR, bp += NR) {
        v4d b0, b1;
        memcpy(&b0, bp, 32), memcpy(&b1, bp + 4, 32);
        c00 = c00 + ap[0] * b0, c01 = c01 + ap[0] * b1;
        c10 = c10 + ap[1] * b0, c11 = c11 + ap[1] * b1;
        c20 = c20 + ap[2] * b0, c21 = c21 + ap[2] * b1;
        c30 = c30 + ap[3] * b0, c31 = c31 + ap[3] * b1;
    }
    memcpy(c, &c00, 32), memcpy(c + 4, &c01, 32);
    memcpy(c + ldc, &c10, 32), memcpy(c + ldc + 4, &c11, 32);
    memcpy(c + 2 * ldc, &c20, 32), memcpy(c + 2 * ldc + 4, &c21, 32);
    memcpy(c + 3 * ldc, &c30, 32), memcpy(c + 3 * ldc + 4, &c31, 32);
}

/* B(k0.., j0..) into panels of NR columns, k-major; columns past n are 0. */
static void pack_b(double *bp, tpmlp_dview B, int k0, int kc, int j0, int n) {
    for (int k = 0; k < kc; k++)
        for (int j = 0; j < NR; j++)
            bp[(size_t)k * NR + j] = j0 + j < n ? B.p[(size_t)(k0 + k) * B.rs + (size_t)(j0 + j) * B.cs] : 0.0;
}

/* A(i0.., k0..) into panels of MR rows, k-major; rows past m are 0. */
static void pack_a(double *ap, tpmlp_dview A, int i0, int mc, int k0, int kc) {
    for (int ip = 0; ip < mc; ip += MR)
        for (int k = 0; k < kc; k++)
            for (int r = 0; r < MR; r++)
                ap[(size_t)ip * kc + (size_t)k * MR + r] =
                    ip + r < mc ? A.p[(size_t)(i0 + ip + r) * A.rs + (size_t)(k0 + k) * A.cs] : 0.0;
}

void tpmlp_seq_gemm(int M, int N, int K, tpmlp_dview A, tpmlp_dview B, double *C, size_t ldc) {
    double *bp = tpmlp_alloc((size_t)KC * NC, sizeof *bp, "oracle GEMM panel of B");
#pragma omp parallel
    {
        double *ap = tpmlp_alloc((size_t)(MC + MR) * KC, sizeof *ap, "oracle GEMM panel of A");
#pragma omp for schedule(static)
        for (int i = 0; i < M; i++) memset(C + (size_t)i * ldc, 0, (size_t)N * sizeof *C);
        for (int j0 = 0; j0 < N; j0 += NC) {
            const int nc = N - j0 < NC ? N - j0 : NC, npanels = (nc + NR - 1) / NR;
            for (int k0 = 0; k0 < K; k0 += KC) { /* in increasing k: the order of every sum */
                const int kc = K - k0 < KC ? K - k0 : KC;
#pragma omp for schedule(static)
                for (int jp = 0; jp < npanels; jp++) pack_b(bp + (size_t)jp * kc * NR, B, k0, kc, j0 + jp * NR, N);
#pragma omp for schedule(dynamic, 1)
                for (int i0 = 0; i0 < M; i0 += MC) {
                    const int mc = M - i0 < MC ? M - i0 : MC;
                    pack_a(ap, A, i0, mc, k0, kc);
                    for (int jp = 0; jp < npanels; jp++) {
                        const int j = j0 + jp * NR, nr = N - j < NR ? N - j : NR;
                        for (int ip = 0; ip < mc; ip += MR) {
                            const int mr = mc - ip < MR ? mc - ip : MR;
                            double *c = C + (size_t)(i0 + ip) * ldc + j;
                            const double *a = ap + (size_t)ip * kc, *b = bp + (size_t)jp * kc * NR;
                            if (mr == MR && nr == NR) {
                                tile(kc, a, b, c, ldc);
                            } else { /* an edge: the tile in a buffer, its valid part back */
                                double t[MR * NR] = {0};
                                for (int r = 0; r < mr; r++) memcpy(t + r * NR, c + (size_t)r * ldc, nr * sizeof *t);
                                tile(kc, a, b, t, NR);
                                for (int r = 0; r < mr; r++) memcpy(c + (size_t)r * ldc, t + r * NR, nr * sizeof *t);
                            }
                        }
                    }
                }
            }
        }
        free(ap);
    }
    free(bp);
}
