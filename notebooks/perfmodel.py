"""The alpha-beta model of one tensor-parallel MLP step (docs/performance-model.md).

    T(p) = 6·2·N·D·F / (p·R)            the six GEMMs, split p ways, at R FLOP/s per rank
         + 2·[2(p-1)·α + 2(p-1)/p · N·D·s / B]   two ring all-reduces of N·D values of s bytes
(elementwise passes are a few percent of the GEMMs and left out; α is the
per-step latency, B the bus bandwidth, as nccl-tests defines it)."""


def gemm_time(N, D, F, p, R):
    return 12.0 * N * D * F / (p * R)


def allreduce_time(nbytes, p, alpha, B):
    if p == 1:
        return 0.0
    return 2 * (p - 1) * alpha + 2 * (p - 1) / p * nbytes / B


def step_time(N, D, F, p, R, alpha, B, s=4):
    return gemm_time(N, D, F, p, R) + 2 * allreduce_time(N * D * s, p, alpha, B)


def fit_alpha_beta(sizes, times, p):
    """Least squares of t = 2(p-1)·α + 2(p-1)/p·n/B over measured (bytes, seconds)."""
    import numpy as np
    A = np.array([[2 * (p - 1), 2 * (p - 1) / p * n] for n in sizes])
    (alpha, inv_b), *_ = np.linalg.lstsq(A, np.array(times), rcond=None)
    return max(alpha, 0.0), 1.0 / inv_b
