"""Banded (local) attention, compiled: only the band of keys |t − s| ≤ w, in O(T·w) time and memory.

Size letters: B batch, H heads, T queries, S keys, Dh head width, W = 2w + 1 keys in a
band (w + 1 when causal).

Query t sits at position p = t + S − T (the queries are the last T of the S positions:
T = S in a layer, T = 1 in a decoding step) and attends to the keys

    s ∈ [p − w, p + w]  (causal: [p − w, p]),  0 ≤ s < S,  key_keep[b, s]

with the reference's math (minitransformer/layers/attention.py) restricted to them:

    forward    e_j = q_t·k_{p−w+j}/√Dh (−∞ outside the band, the sequence or the padding),
               P_tj = softmax_j(e),   O_t = Σ_j P_tj·v_{p−w+j}
    backward   dV_s += P_tj·dO_t,   dP_tj = dO_t·v_s,   dE_tj = P_tj·(dP_tj − Σ_j' dP_tj'·P_tj'),
               dQ_t = Σ_j dE_tj·k_s/√Dh,   dK_s += dE_tj·q_t/√Dh      (s = p − w + j)

P is stored as the band, (B, H, T, W): entry j of row t is the weight of key p − w + j,
0 where that key does not exist or is masked. A row with no key (all padded) has weight 0
everywhere and output 0, never NaN (exp_sum maps −∞ to exactly 0 and the sum 0 is not
divided by). With w ≥ S − 1 every key is in the band: exact attention (tests/test_banded.py).

How the work is laid out. The queries go in blocks of Tb (band_block: between 8 and 64,
about w). The keys a block needs form one contiguous range of R ≤ Tb + 2w keys
(lo … hi − 1), so each block is a small dense attention problem: a (Tb, R) tile of scores
from one product, the positions outside the band set to −∞ row by row, the softmax, and
one more product with V's range. The backward makes the same tile of P again (from the
stored band), dP = dO·V_rangeᵀ, dS, and four products, adding into the range of dK and dV.
The tile wastes (Tb + 2w)/W ≤ about 2 of its entries, and buys the micro-kernel's speed:
a first version with one dot product per key (csrc/kernels.pxd: dot, axpy) ran at
3 GFLOP/s and was slower than exact attention at T = 512, w = 32 (bench/bench_approx.py).
Everything is the project's shared C (csrc/kernels.pxd: gemm, transpose, mask_and_max,
exp_sum, dot), so every instruction-set path the other modules have, this one has too.
One (b, h) problem per OpenMP thread: neighbouring blocks add into the same rows of dK
and dV, which stays race-free because a problem is never split.
"""

cimport cython
from cython cimport floating
from cython.parallel cimport prange, threadid
from libc.math cimport sqrt, INFINITY
from libc.string cimport memset

from kernels cimport dot, exp_sum, gemm, mask_and_max, scale_row, transpose
cimport kernels

import numpy as np

from minitransformer.arrays import float_dtype

KERNEL = "the banded attention kernels"  # for the error messages

cdef extern from "kernels.h" nogil:
    int mt_max_threads()  # OpenMP's threads for a parallel loop; 1 without OpenMP


cdef inline int key_range_start(int p0, int window) noexcept nogil:
    """lo: the first key the block whose first query sits at p0 may see."""
    return p0 - window if p0 > window else 0


cdef inline int key_range_stop(int p_last, int window, bint causal, int S) noexcept nogil:
    """hi: one past the last key the block whose last query sits at p_last may see."""
    cdef int hi = p_last + 1 if causal else p_last + window + 1
    return hi if hi < S else S


@cython.boundscheck(False)
@cython.wraparound(False)
@cython.cdivision(True)
cdef void forward_head(const floating *q, const floating *k, const floating *v,
                       const unsigned char *keep, floating *probs, floating *out,
                       int T, int S, int Dh, int W, int window, bint causal, int block,
                       floating scale, floating *k_t, floating *tile) noexcept nogil:
    """q (T, Dh), k, v (S, Dh), keep (S,) -> probs (T, W), the band; out (T, Dh).
    Scratch: k_t for kᵀ (Dh, S), tile (block, block + 2w + 1)."""
    cdef int offset = S - T
    cdef int n, t0, Tb, lo, hi, R, r, c, s, p, j
    cdef floating row_max, total
    cdef floating *row
    transpose(S, Dh, k, Dh, k_t, S)  # kᵀ (Dh, S): the product reads its right operand by rows
    for n in range((T + block - 1) // block):
        t0 = n * block
        Tb = block if T - t0 > block else T - t0
        lo = key_range_start(t0 + offset, window)
        hi = key_range_stop(t0 + Tb - 1 + offset, window, causal, S)
        R = hi - lo
        # pass 1: the block's scores against its key range, (Tb, R)
        gemm(False, Tb, R, Dh, scale, q + t0 * Dh, Dh, k_t + lo, S, <floating> 0, tile, R)
        for r in range(Tb):
            p = t0 + r + offset
            row = tile + r * R
            # pass 2: −∞ outside the band and on padded keys; softmax over the rest
            for c in range(R):
                s = lo + c
                if s < p - window or s > p + window or (causal and s > p) or keep[s] == 0:
                    row[c] = -INFINITY
            row_max = mask_and_max(row, NULL, R)
            if row_max == -INFINITY:
                memset(row, 0, R * sizeof(floating))  # no key at all: weights and output 0
            else:
                total = exp_sum(row, R, row_max)
                scale_row(row, R, 1 / total)
            # the band's storage: entry j is key p − w + j
            for j in range(W):
                s = p - window + j
                probs[(t0 + r) * W + j] = row[s - lo] if lo <= s < hi else 0
        # pass 3: the weighted average of the range's values (zero weight outside the band)
        gemm(False, Tb, Dh, R, <floating> 1, tile, R, v + lo * Dh, Dh, <floating> 0, out + t0 * Dh, Dh)


@cython.boundscheck(False)
@cython.wraparound(False)
@cython.cdivision(True)
cdef void backward_head(const floating *dout, const floating *q, const floating *k,
                        const floating *v, const floating *probs,
                        floating *dq, floating *dk, floating *dv,
                        int T, int S, int Dh, int W, int window, bint causal, int block,
                        floating scale, floating *v_t, floating *tile, floating *dtile) noexcept nogil:
    """dout (T, Dh), probs (T, W) -> dq (T, Dh); dk, dv (S, Dh), zeroed by the caller.
    Scratch: v_t for vᵀ (Dh, S), tile and dtile (block, block + 2w + 1)."""
    cdef int offset = S - T
    cdef int n, t0, Tb, lo, hi, R, r, c, s, p
    cdef floating row_dot
    cdef floating *row
    cdef floating *drow
    transpose(S, Dh, v, Dh, v_t, S)  # vᵀ (Dh, S)
    for n in range((T + block - 1) // block):
        t0 = n * block
        Tb = block if T - t0 > block else T - t0
        lo = key_range_start(t0 + offset, window)
        hi = key_range_stop(t0 + Tb - 1 + offset, window, causal, S)
        R = hi - lo
        # the forward's tile of P, from the band (0 outside it)
        for r in range(Tb):
            p = t0 + r + offset
            row = tile + r * R
            for c in range(R):
                s = lo + c
                row[c] = probs[(t0 + r) * W + s - p + window] if p - window <= s <= (p if causal else p + window) else 0
        # in the forward pass this was: out = P·V_range
        gemm(True, R, Dh, Tb, <floating> 1, tile, R, dout + t0 * Dh, Dh, <floating> 1, dv + lo * Dh, Dh)
        gemm(False, Tb, R, Dh, <floating> 1, dout + t0 * Dh, Dh, v_t + lo, S, <floating> 0, dtile, R)  # dP
        # in the forward pass this was: P = softmax(scores); dS = P ⊙ (dP − rowsum(dP ⊙ P))
        for r in range(Tb):
            row = tile + r * R
            drow = dtile + r * R
            row_dot = dot(row, drow, R)
            for c in range(R):
                drow[c] = row[c] * (drow[c] - row_dot)
        # in the forward pass this was: scores = scale · Q_block·K_rangeᵀ
        gemm(False, Tb, Dh, R, scale, dtile, R, k + lo * Dh, Dh, <floating> 0, dq + t0 * Dh, Dh)
        gemm(True, R, Dh, Tb, scale, dtile, R, q + t0 * Dh, Dh, <floating> 1, dk + lo * Dh, Dh)


@cython.boundscheck(False)
@cython.wraparound(False)
@cython.cdivision(True)
@cython.initializedcheck(False)
cdef void forward_all(const floating[:, :, :, ::1] q, const floating[:, :, :, ::1] k,
                      const floating[:, :, :, ::1] v, const unsigned char[:, ::1] keep,
                      int window, bint causal, int block, floating[:, :, :, ::1] probs,
                      floating[:, :, :, ::1] out, floating[:, ::1] scratch, int n_threads) noexcept:
    cdef int B = q.shape[0], H = q.shape[1], T = q.shape[2], Dh = q.shape[3], S = k.shape[2]
    cdef int W = probs.shape[3]
    cdef floating scale = 1 / sqrt(<double> Dh)
    cdef int problem, b, h
    cdef floating *work
    for problem in prange(B * H, nogil=True, schedule="dynamic", num_threads=n_threads):
        b = problem // H
        h = problem % H
        work = &scratch[threadid(), 0]
        forward_head(&q[b, h, 0, 0], &k[b, h, 0, 0], &v[b, h, 0, 0], &keep[b, 0],
                     &probs[b, h, 0, 0], &out[b, h, 0, 0], T, S, Dh, W, window, causal, block,
                     scale, work, work + Dh * S)


@cython.boundscheck(False)
@cython.wraparound(False)
@cython.cdivision(True)
@cython.initializedcheck(False)
cdef void backward_all(const floating[:, :, :, ::1] dout, const floating[:, :, :, ::1] q,
                       const floating[:, :, :, ::1] k, const floating[:, :, :, ::1] v,
                       const floating[:, :, :, ::1] probs, int window, bint causal, int block,
                       floating[:, :, :, ::1] dq, floating[:, :, :, ::1] dk,
                       floating[:, :, :, ::1] dv, floating[:, ::1] scratch, int tile_size,
                       int n_threads) noexcept:
    cdef int B = q.shape[0], H = q.shape[1], T = q.shape[2], Dh = q.shape[3], S = k.shape[2]
    cdef int W = probs.shape[3]
    cdef floating scale = 1 / sqrt(<double> Dh)
    cdef int problem, b, h
    cdef floating *work
    for problem in prange(B * H, nogil=True, schedule="dynamic", num_threads=n_threads):
        b = problem // H
        h = problem % H
        work = &scratch[threadid(), 0]
        backward_head(&dout[b, h, 0, 0], &q[b, h, 0, 0], &k[b, h, 0, 0], &v[b, h, 0, 0],
                      &probs[b, h, 0, 0], &dq[b, h, 0, 0], &dk[b, h, 0, 0], &dv[b, h, 0, 0],
                      T, S, Dh, W, window, causal, block, scale, work, work + Dh * S,
                      work + Dh * S + tile_size)


# --- the Python entry points -----------------------------------------------------------------

def _window_checked(window):
    if isinstance(window, bool) or not isinstance(window, (int, np.integer)) or window < 0:
        raise ValueError(f"banded attention window w must be an integer ≥ 0, got {window!r}")
    return int(window)


def band_width(window, causal):
    """W, the keys in a band: 2w + 1, or w + 1 when causal."""
    return window + 1 if causal else 2 * window + 1


def band_block(window):
    """Tb, the queries of one tile: about w, between 8 and 64."""
    return min(64, max(8, window))


def _tile_size(window):
    """Entries of one (Tb, Tb + 2w) tile of scores."""
    block = band_block(window)
    return block * (block + 2 * window)


def banded_forward(q, k, v, window, causal=False, key_keep=None):
    """q (B, H, T, Dh), k, v (B, H, S, Dh) with T ≤ S, window w ≥ 0, key_keep (B, S) bool or None
    -> out (B, H, T, Dh), probs (B, H, T, W), the band's weights (W = band_width(w, causal))."""
    window = _window_checked(window)
    q, k, v = np.asarray(q), np.asarray(k), np.asarray(v)
    if q.ndim != 4 or k.shape != v.shape or k.ndim != 4 or k.shape[:2] != q.shape[:2] or k.shape[3] != q.shape[3]:
        raise ValueError(f"banded attention expects q (B, H, T, Dh), k, v (B, H, S, Dh); got {q.shape}, {k.shape}, {v.shape}")
    B, H, T, Dh = q.shape
    S = k.shape[2]
    if T > S:
        raise ValueError(f"banded attention needs T ≤ S (queries are the last T positions), got T={T}, S={S}")
    dtype = float_dtype(q, k, v, kernel=KERNEL)
    q, k, v = (np.ascontiguousarray(x, dtype=dtype) for x in (q, k, v))
    keep = np.ones((B, S), np.uint8) if key_keep is None else np.ascontiguousarray(
        np.broadcast_to(np.asarray(key_keep, bool), (B, S)), dtype=np.uint8)
    W = band_width(window, causal)
    out = np.zeros((B, H, T, Dh), dtype=dtype)  # (B, H, T, Dh)
    probs = np.zeros((B, H, T, W), dtype=dtype)  # (B, H, T, W)
    if out.size == 0 or S == 0:
        return out, probs
    cdef int n_threads = min(mt_max_threads(), B * H)
    cdef int block = band_block(window)
    scratch = np.empty((n_threads, Dh * S + _tile_size(window)), dtype=dtype)  # kᵀ and one tile per thread
    if dtype == np.float32:
        forward_all[float](q, k, v, keep, window, causal, block, probs, out, scratch, n_threads)
    else:
        forward_all[double](q, k, v, keep, window, causal, block, probs, out, scratch, n_threads)
    return out, probs


def banded_backward(dout, q, k, v, probs, window, causal=False):
    """dout (B, H, T, Dh), the forward's q, k, v, probs (B, H, T, W), window and causal
    -> dq (B, H, T, Dh), dk (B, H, S, Dh), dv (B, H, S, Dh)."""
    window = _window_checked(window)
    dtype = float_dtype(dout, q, k, v, probs, kernel=KERNEL)
    dout, q, k, v, probs = (np.ascontiguousarray(x, dtype=dtype) for x in (dout, q, k, v, probs))
    B, H, T, Dh = q.shape
    S = k.shape[2]
    if dout.shape != q.shape or probs.shape != (B, H, T, band_width(window, causal)):
        raise ValueError(f"dout {dout.shape} or probs {probs.shape} do not fit q {q.shape} and window {window}")
    dq = np.zeros((B, H, T, Dh), dtype=dtype)  # (B, H, T, Dh)
    dk = np.zeros((B, H, S, Dh), dtype=dtype)  # (B, H, S, Dh)
    dv = np.zeros((B, H, S, Dh), dtype=dtype)  # (B, H, S, Dh)
    if dq.size == 0 or S == 0:
        return dq, dk, dv
    cdef int n_threads = min(mt_max_threads(), B * H)
    cdef int block = band_block(window)
    cdef int tile_size = _tile_size(window)
    scratch = np.empty((n_threads, Dh * S + 2 * tile_size), dtype=dtype)  # vᵀ and two tiles per thread
    if dtype == np.float32:
        backward_all[float](dout, q, k, v, probs, window, causal, block, dq, dk, dv, scratch, tile_size, n_threads)
    else:
        backward_all[double](dout, q, k, v, probs, window, causal, block, dq, dk, dv, scratch, tile_size, n_threads)
    return dq, dk, dv


def band_to_dense(probs, window, key_len):
    """The band (B, H, T, W) written into the full (B, H, T, S) matrix, for inspection."""
    B, H, T, W = probs.shape
    dense = np.zeros((B, H, T, key_len), dtype=probs.dtype)
    for t in range(T):
        first = t + key_len - T - window
        lo, hi = max(0, first), min(key_len, first + W)
        if hi > lo:
            dense[:, :, t, lo:hi] = probs[:, :, t, lo - first:hi - first]
    return dense


# --- the instruction-set path of this module (minitransformer/_ext/__init__.py chooses) ---

def _isa_select(index):
    """Use path number `index` (csrc/kernels.h) from now on, in this module; False if it cannot run."""
    return kernels.mt_isa_select(index) == 0


def _isa_active_index():
    return kernels.mt_active.isa


kernels.mt_isa_select(kernels.mt_isa_best())
