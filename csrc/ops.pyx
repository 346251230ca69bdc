"""Fused row kernels for the loss, LayerNorm and dropout, compiled: OpenMP over rows, SIMD within.

Size letters: N rows (B·T flattened), V vocabulary, D model width.

Both NumPy references (minitransformer/layers/loss.py and layernorm.py) make several
passes over whole (N, V) or (N, D) arrays, each writing a temporary. Here each row is
finished while it is in cache, and the rows are shared out over threads.

Cross-entropy with label smoothing, one pass over the data for the loss and its
gradient together (the reference's docstring derives both):

    loss_n     = m + log Σ_v exp(z_v − m) − (1 − ε)·z_y − (ε/V)·Σ_v z_v     (0 for padding)
    dlogits_n  = (softmax(z) − ε/V − (1 − ε)·onehot(y)) / n_valid          (0 for padding)

so the forward returns the loss and keeps dlogits in its cache, and the backward just
hands it over: cross_entropy_forward / cross_entropy_backward here are a pair, their
cache is not the reference's.

LayerNorm over the last axis: the reference's math, and the reference's cache
(x_hat, inv_std, gamma), so either backward accepts either forward's cache:

    forward   μ = mean(x), x̂ = (x − μ)/√(mean((x − μ)²) + ε), y = γ ⊙ x̂ + β
    backward  dx = (dx̂ − mean(dx̂) − x̂ ⊙ mean(dx̂ ⊙ x̂)) / √(σ² + ε),  dx̂ = dy ⊙ γ
              dγ = Σ_rows dy ⊙ x̂,  dβ = Σ_rows dy

The two column sums of the backward are taken per thread (each thread its own (D,)
partial sums, over a fixed static share of the rows) and then added, so results do not
depend on timing.

Dropout, fused: one pass draws the mask from the counter-based generator of
minitransformer/layers/dropout.py (the same bits, csrc/kernels.h: mt_dropout_bits) and
writes both the scaled output and the mask; the backward is one masked scale:

    keep_i = bits(key, i) ≥ round(p · 2^24),   y = x ⊙ keep / (1 − p),   dx = dy ⊙ keep / (1 − p)
"""

cimport cython
from cython cimport floating
from cython.parallel cimport prange, threadid
from libc.math cimport sqrt
from libc.string cimport memcpy, memset

from libc.stdint cimport int64_t, uint8_t, uint32_t, uint64_t

from kernels cimport dot, dropout, exp_sum, log_, mask_and_max, masked_scale, row_sum, scale_row
cimport kernels

import numpy as np

from minitransformer.arrays import check_token_ids, float_dtype

cdef extern from "kernels.h" nogil:
    int ops_max_threads "mt_max_threads"()  # OpenMP's threads for a parallel loop; 1 without OpenMP


# --- cross-entropy -------------------------------------------------------------------------

@cython.boundscheck(False)
@cython.wraparound(False)
@cython.cdivision(True)
@cython.initializedcheck(False)
cdef void cross_entropy_rows(const floating[:, ::1] logits, const Py_ssize_t[::1] targets,
                             Py_ssize_t pad_id, double smoothing, double n_valid,
                             floating[::1] losses, floating[:, ::1] dlogits,
                             int n_threads) noexcept:
    """logits (N, V), targets (N,) -> losses (N,) and dlogits (N, V), one row per iteration."""
    cdef Py_ssize_t N = logits.shape[0]
    cdef int V = <int> logits.shape[1]
    cdef Py_ssize_t n, target
    cdef int v
    cdef floating row_max, exp_total, logit_total, inv_total
    cdef floating off_target = <floating> (smoothing / V)  # ε/V: the smoothed mass of every token
    cdef floating on_target = <floating> (1.0 - smoothing)  # 1 − ε: the extra mass of the target
    cdef floating weight = <floating> (1.0 / n_valid)  # the mean over non-padding targets
    cdef floating *grad_row
    for n in prange(N, nogil=True, schedule="static", num_threads=n_threads):
        grad_row = &dlogits[n, 0]
        target = targets[n]
        if target == pad_id:
            losses[n] = 0
            memset(grad_row, 0, V * sizeof(floating))  # padding takes no part, forward or back
            continue
        # the row's exp(z − m) is built in its gradient row, which it becomes
        memcpy(grad_row, &logits[n, 0], V * sizeof(floating))
        row_max = mask_and_max(grad_row, NULL, V)
        exp_total = exp_sum(grad_row, V, row_max)  # ≥ 1: the maximum gives exp(0)
        logit_total = row_sum(&logits[n, 0], V) if smoothing != 0 else 0
        # loss = m + log Σ exp(z − m) − (1 − ε)·z_y − (ε/V)·Σ z
        losses[n] = (row_max + log_(exp_total) - on_target * logits[n, target]
                     - off_target * logit_total)
        # ∂loss/∂z = p − q, with p = exp(z − m)/Σ and q = (1 − ε)·onehot(y) + ε/V
        inv_total = 1 / exp_total
        for v in range(V):
            grad_row[v] = (grad_row[v] * inv_total - off_target) * weight
        grad_row[target] -= on_target * weight


def cross_entropy_forward(logits, targets, pad_id, smoothing=0.0):
    """logits (B, T, V) float32/float64, targets (B, T) int -> loss (scalar), cache.

    The cache holds dlogits (B, T, V), computed here in the same pass; pass the cache to
    this module's cross_entropy_backward (not the reference's)."""
    logits, targets = np.asarray(logits), np.asarray(targets)
    if logits.ndim < 1 or logits.shape[:-1] != targets.shape:
        raise ValueError(f"logits of shape {logits.shape} do not match targets of shape {targets.shape}")
    dtype = float_dtype(logits, kernel="the Cython loss kernel")
    vocab_size = logits.shape[-1]
    check_token_ids(targets, vocab_size, name="target ids")
    if not 0.0 <= smoothing < 1.0:
        raise ValueError(f"label smoothing must lie in [0, 1), got {smoothing!r}")
    rows = np.ascontiguousarray(logits.reshape(-1, vocab_size))  # (N, V)
    flat_targets = np.ascontiguousarray(targets.reshape(-1), dtype=np.intp)  # (N,)
    n_valid = max(int(np.count_nonzero(flat_targets != pad_id)), 1)
    losses = np.empty(rows.shape[0], dtype=dtype)  # (N,)
    dlogits = np.empty_like(rows)  # (N, V)
    if rows.size:
        n_threads = ops_max_threads()
        if dtype == np.float32:
            cross_entropy_rows[float](rows, flat_targets, pad_id, smoothing, n_valid, losses, dlogits, n_threads)
        else:
            cross_entropy_rows[double](rows, flat_targets, pad_id, smoothing, n_valid, losses, dlogits, n_threads)
    loss = losses.sum() / n_valid  # NumPy's pairwise sum, as in the reference
    return loss, (dlogits.reshape(logits.shape),)


def cross_entropy_backward(cache):
    """-> dlogits (B, T, V), the gradient of the mean loss (computed by the forward)."""
    (dlogits,) = cache
    return dlogits


# --- LayerNorm -----------------------------------------------------------------------------

@cython.boundscheck(False)
@cython.wraparound(False)
@cython.cdivision(True)
@cython.initializedcheck(False)
cdef void layernorm_rows(const floating[:, ::1] x, const floating[::1] gamma, const floating[::1] beta,
                         double eps, floating[:, ::1] y, floating[:, ::1] x_hat, floating[::1] inv_std,
                         int n_threads) noexcept:
    """x (N, D) -> y (N, D), x_hat (N, D), inv_std (N,)."""
    cdef Py_ssize_t N = x.shape[0]
    cdef int D = <int> x.shape[1]
    cdef Py_ssize_t n
    cdef int d
    cdef floating mean, variance, row_inv_std
    cdef floating *centered
    for n in prange(N, nogil=True, schedule="static", num_threads=n_threads):
        centered = &x_hat[n, 0]
        mean = row_sum(&x[n, 0], D) / D
        for d in range(D):
            centered[d] = x[n, d] - mean
        # two passes (mean, then the centered squares): mean(x²) − μ² would cancel badly
        variance = dot(centered, centered, D) / D
        row_inv_std = 1 / sqrt(variance + eps)
        inv_std[n] = row_inv_std
        scale_row(centered, D, row_inv_std)  # now x̂
        for d in range(D):
            y[n, d] = centered[d] * gamma[d] + beta[d]


@cython.boundscheck(False)
@cython.wraparound(False)
@cython.cdivision(True)
@cython.initializedcheck(False)
cdef void layernorm_backward_rows(const floating[:, ::1] dy, const floating[:, ::1] x_hat,
                                  const floating[::1] inv_std, const floating[::1] gamma,
                                  floating[:, ::1] dx, floating[:, ::1] partial_dgamma,
                                  floating[:, ::1] partial_dbeta, int n_threads) noexcept:
    """dy (N, D) -> dx (N, D); this thread's share of dγ and dβ into partial_*[thread]."""
    cdef Py_ssize_t N = dy.shape[0]
    cdef int D = <int> dy.shape[1]
    cdef Py_ssize_t n
    cdef int d, thread
    cdef floating mean_dx_hat, mean_dx_hat_x_hat
    cdef floating *dx_row
    for n in prange(N, nogil=True, schedule="static", num_threads=n_threads):
        thread = threadid()
        dx_row = &dx[n, 0]
        for d in range(D):
            dx_row[d] = dy[n, d] * gamma[d]  # dx̂, built in dx's row
            partial_dgamma[thread, d] += dy[n, d] * x_hat[n, d]
            partial_dbeta[thread, d] += dy[n, d]
        # the two means are what μ and σ² contribute (see layers/layernorm.py)
        mean_dx_hat = row_sum(dx_row, D) / D
        mean_dx_hat_x_hat = dot(dx_row, &x_hat[n, 0], D) / D
        for d in range(D):
            dx_row[d] = inv_std[n] * (dx_row[d] - mean_dx_hat - x_hat[n, d] * mean_dx_hat_x_hat)


def layernorm_forward(x, gamma, beta, eps=1e-5):
    """x (..., D), gamma (D,), beta (D,) -> y (..., D), cache (x_hat, inv_std, gamma) as the reference's."""
    x, gamma, beta = np.asarray(x), np.asarray(gamma), np.asarray(beta)
    d_model = x.shape[-1] if x.ndim else 0
    if x.ndim < 1 or gamma.shape != (d_model,) or beta.shape != (d_model,):
        raise ValueError(f"LayerNorm of x {x.shape} needs gamma and beta of shape ({d_model},), "
                         f"got {gamma.shape} and {beta.shape}")  # fmt: skip
    dtype = float_dtype(x, gamma, beta, kernel="the Cython LayerNorm kernels")
    rows = np.ascontiguousarray(x.reshape(-1, d_model), dtype=dtype)  # (N, D)
    gamma_c = np.ascontiguousarray(gamma, dtype=dtype)
    beta_c = np.ascontiguousarray(beta, dtype=dtype)
    y = np.empty_like(rows)  # (N, D)
    x_hat = np.empty_like(rows)  # (N, D)
    inv_std = np.empty(rows.shape[0], dtype=dtype)  # (N,)
    if rows.size:
        n_threads = ops_max_threads()
        if dtype == np.float32:
            layernorm_rows[float](rows, gamma_c, beta_c, eps, y, x_hat, inv_std, n_threads)
        else:
            layernorm_rows[double](rows, gamma_c, beta_c, eps, y, x_hat, inv_std, n_threads)
    cache = (x_hat.reshape(x.shape), inv_std.reshape(x.shape[:-1] + (1,)), gamma)
    return y.reshape(x.shape), cache


def layernorm_backward(dy, cache):
    """dy (..., D) -> dx (..., D), dgamma (D,), dbeta (D,)."""
    x_hat, inv_std, gamma = cache
    dy = np.asarray(dy)
    if dy.shape != x_hat.shape:
        raise ValueError(f"dy has shape {dy.shape}, the forward's output had {x_hat.shape}")
    d_model = x_hat.shape[-1]
    dtype = float_dtype(dy, x_hat, kernel="the Cython LayerNorm kernels")
    dy_rows = np.ascontiguousarray(dy.reshape(-1, d_model), dtype=dtype)  # (N, D)
    x_hat_rows = np.ascontiguousarray(x_hat.reshape(-1, d_model), dtype=dtype)  # (N, D)
    inv_std_rows = np.ascontiguousarray(np.asarray(inv_std).reshape(-1), dtype=dtype)  # (N,)
    gamma_c = np.ascontiguousarray(gamma, dtype=dtype)  # (D,)
    dx = np.empty_like(dy_rows)  # (N, D)
    n_threads = min(ops_max_threads(), max(dy_rows.shape[0], 1))
    partial_dgamma = np.zeros((n_threads, d_model), dtype=dtype)  # (threads, D)
    partial_dbeta = np.zeros((n_threads, d_model), dtype=dtype)  # (threads, D)
    if dy_rows.size:
        if dtype == np.float32:
            layernorm_backward_rows[float](dy_rows, x_hat_rows, inv_std_rows, gamma_c,
                                           dx, partial_dgamma, partial_dbeta, n_threads)
        else:
            layernorm_backward_rows[double](dy_rows, x_hat_rows, inv_std_rows, gamma_c,
                                            dx, partial_dgamma, partial_dbeta, n_threads)
    return dx.reshape(dy.shape), partial_dgamma.sum(axis=0), partial_dbeta.sum(axis=0)


# --- dropout -------------------------------------------------------------------------------

# elements per work item: the threads share a tensor out in chunks this long
DEF_DROPOUT_CHUNK = 1 << 16
cdef int64_t DROPOUT_CHUNK = DEF_DROPOUT_CHUNK


@cython.boundscheck(False)
@cython.wraparound(False)
@cython.cdivision(True)
cdef void dropout_chunks(const floating[::1] x, floating[::1] y, uint8_t[::1] keep, uint64_t key,
                         uint32_t threshold, floating scale, int n_threads) noexcept:
    """x (N,) -> y (N,), keep (N,): every chunk draws its own elements' bits."""
    cdef int64_t N = x.shape[0]
    cdef int64_t n_chunks = (N + DROPOUT_CHUNK - 1) // DROPOUT_CHUNK
    cdef int64_t chunk, first
    for chunk in prange(n_chunks, nogil=True, schedule="static", num_threads=n_threads):
        first = chunk * DROPOUT_CHUNK
        dropout(&x[first], &y[first], &keep[first], first, min(<int64_t> DROPOUT_CHUNK, N - first),
                key, threshold, scale)


@cython.boundscheck(False)
@cython.wraparound(False)
@cython.cdivision(True)
cdef void masked_scale_chunks(const floating[::1] dy, const uint8_t[::1] keep, floating[::1] dx,
                              floating scale, int n_threads) noexcept:
    cdef int64_t N = dy.shape[0]
    cdef int64_t n_chunks = (N + DROPOUT_CHUNK - 1) // DROPOUT_CHUNK
    cdef int64_t chunk, first
    for chunk in prange(n_chunks, nogil=True, schedule="static", num_threads=n_threads):
        first = chunk * DROPOUT_CHUNK
        masked_scale(&dy[first], &keep[first], &dx[first], min(<int64_t> DROPOUT_CHUNK, N - first), scale)


def dropout_mask_forward(x, key, threshold, scale):
    """x (any shape) float32/float64, the call's key (uint64), threshold (< 2^24), scale
    -> y (same shape), keep (same shape, bool): the fused kernel behind the Cython
    backend's dropout_forward (minitransformer/layers/dropout.py explains the generator)."""
    x = np.asarray(x)
    float_dtype(x, kernel="the Cython dropout kernel")
    if x.size >= 1 << 32:
        raise ValueError(f"the dropout generator numbers elements with 32 bits; {x.size} is too many")
    flat = np.ascontiguousarray(x).reshape(-1)  # (N,)
    y = np.empty_like(flat)  # (N,)
    keep = np.empty(flat.shape, dtype=np.uint8)  # (N,)
    if flat.size:
        n_threads = min(ops_max_threads(), (flat.size + DROPOUT_CHUNK - 1) // DROPOUT_CHUNK)
        if x.dtype == np.float32:
            dropout_chunks[float](flat, y, keep, key, threshold, scale, n_threads)
        else:
            dropout_chunks[double](flat, y, keep, key, threshold, scale, n_threads)
    return y.reshape(x.shape), keep.view(np.bool_).reshape(x.shape)


def dropout_mask_backward(dy, keep, scale):
    """dy, keep (same shape) -> dx = dy ⊙ keep · scale."""
    dy = np.asarray(dy)
    float_dtype(dy, kernel="the Cython dropout kernel")
    if keep.shape != dy.shape:
        raise ValueError(f"dy has shape {dy.shape}, the forward's mask has {keep.shape}")
    flat = np.ascontiguousarray(dy).reshape(-1)  # (N,)
    keep_flat = np.ascontiguousarray(keep).reshape(-1).view(np.uint8)  # (N,)
    dx = np.empty_like(flat)  # (N,)
    if flat.size:
        n_threads = min(ops_max_threads(), (flat.size + DROPOUT_CHUNK - 1) // DROPOUT_CHUNK)
        if dy.dtype == np.float32:
            masked_scale_chunks[float](flat, keep_flat, dx, scale, n_threads)
        else:
            masked_scale_chunks[double](flat, keep_flat, dx, scale, n_threads)
    return dx.reshape(dy.shape)


# --- the instruction-set path of this module (minitransformer/_ext/__init__.py chooses) ---

def _isa_select(index):
    """Use path number `index` (csrc/kernels.h) from now on, in this module; False if it cannot run."""
    return kernels.mt_isa_select(index) == 0


kernels.mt_isa_select(kernels.mt_isa_best())
