/* The float64 oracle's matrix product, blocked and threaded but with the bits
 * of the plain triple loop: every element of C is
 *
 *     s = 0.0;  for k = 0, 1, …, K-1:  s = s + A(i,k)·B(k,j)
 *
 * each product rounded to double and then added (no FMA: the file is built
 * with -ffp-contract=off), the k in increasing order. Blocking only decides
 * when a partial sum waits in C between blocks of k, and threads only decide
 * who computes an element: neither changes a bit, so a vector file written by
 * this code is byte for byte the file the triple loop writes, on any machine
 * and with any number of threads. */
#ifndef TPMLP_SEQGEMM_H
#define TPMLP_SEQGEMM_H

#include <stddef.h>

/* A strided matrix view: element (r, c) is p[r·rs + c·cs]. A transposed view
 * swaps the strides, so no operand is ever copied into another layout. */
typedef struct {
    const double *p;
    size_t rs, cs;
} tpmlp_dview;

/* C (M×N, row stride ldc) = A (M×K) · B (K×N) in the order above. K = 0 gives
 * zeros. Uses OpenMP threads when called outside a parallel region. */
void tpmlp_seq_gemm(int M, int N, int K, tpmlp_dview A, tpmlp_dview B, double *C, size_t ldc);

#endif
