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

The work per row is W dot products of length Dh and W axpys: the row kernels of
csrc/kernels.pxd (dot, axpy, exp_sum, mask_and_max), so every instruction-set path the
other modules have, this one has too. One (b, h) problem per OpenMP thread: the backward
adds into dK and dV rows that neighbouring queries share, which stays race-free because a
problem is never split.
"""

cimport cython
from cython cimport floating
from cython.parallel cimport prange, threadid
from libc.math cimport sqrt, INFINITY
from libc.string cimport memset

from kernels cimport axpy, dot, exp_sum, mask_and_max, scale_row
cimport kernels

import numpy as np

cdef extern from "kernels.h" nogil:
    int mt_max_threads()  # OpenMP's threads for a parallel loop; 1 without OpenMP


@cython.boundscheck(False)
@cython.wraparound(False)
@cython.cdivision(True)
@cython.initializedcheck(False)
cdef void forward_all(const floating[:, :, :, ::1] q, const floating[:, :, :, ::1] k,
                      const floating[:, :, :, ::1] v, const unsigned char[:, ::1] keep,
                      int window, bint causal, floating[:, :, :, ::1] probs,
                      floating[:, :, :, ::1] out, int n_threads) noexcept:
    cdef int B = q.shape[0], H = q.shape[1], T = q.shape[2], Dh = q.shape[3], S = k.shape[2]
    cdef int W = probs.shape[3]
    cdef int offset = S - T  # the position of query 0
    cdef floating scale = 1 / sqrt(<double> Dh)
    cdef int problem, b, h, t, j, s, p
    cdef floating row_max, total
    cdef floating *row
    for problem in prange(B * H, nogil=True, schedule="dynamic", num_threads=n_threads):
        b = problem // H
        h = problem % H
        for t in range(T):
            p = t + offset
            row = &probs[b, h, t, 0]
            # pass 1: the band's scores, −∞ where there is no key to attend to
            for j in range(W):
                s = p - window + j
                if s < 0 or s >= S or keep[b, s] == 0:
                    row[j] = -INFINITY
                else:
                    row[j] = dot(&q[b, h, t, 0], &k[b, h, s, 0], Dh) * scale
            memset(&out[b, h, t, 0], 0, Dh * sizeof(floating))
            # pass 2: softmax over the band
            row_max = mask_and_max(row, NULL, W)
            if row_max == -INFINITY:
                memset(row, 0, W * sizeof(floating))  # no key at all: weights and output 0
                continue
            total = exp_sum(row, W, row_max)
            scale_row(row, W, 1 / total)
            # pass 3: the weighted average of the band's values
            for j in range(W):
                if row[j] != 0:
                    axpy(&out[b, h, t, 0], &v[b, h, p - window + j, 0], row[j], Dh)


@cython.boundscheck(False)
@cython.wraparound(False)
@cython.cdivision(True)
@cython.initializedcheck(False)
cdef void backward_all(const floating[:, :, :, ::1] dout, const floating[:, :, :, ::1] q,
                       const floating[:, :, :, ::1] k, const floating[:, :, :, ::1] v,
                       const floating[:, :, :, ::1] probs, int window,
                       floating[:, :, :, ::1] dq, floating[:, :, :, ::1] dk,
                       floating[:, :, :, ::1] dv, floating[:, ::1] scratch, int n_threads) noexcept:
    cdef int B = q.shape[0], H = q.shape[1], T = q.shape[2], Dh = q.shape[3], S = k.shape[2]
    cdef int W = probs.shape[3]
    cdef int offset = S - T
    cdef floating scale = 1 / sqrt(<double> Dh)
    cdef int problem, b, h, t, j, s, p
    cdef floating row_dot, weight
    cdef floating *dprobs
    for problem in prange(B * H, nogil=True, schedule="dynamic", num_threads=n_threads):
        b = problem // H
        h = problem % H
        dprobs = &scratch[threadid(), 0]
        for t in range(T):
            p = t + offset
            memset(&dq[b, h, t, 0], 0, Dh * sizeof(floating))
            # in the forward pass this was: O_t = Σ_j P_tj·v_s; masked keys have P = 0
            row_dot = 0
            for j in range(W):
                weight = probs[b, h, t, j]
                dprobs[j] = 0
                if weight != 0:
                    s = p - window + j
                    axpy(&dv[b, h, s, 0], &dout[b, h, t, 0], weight, Dh)
                    dprobs[j] = dot(&dout[b, h, t, 0], &v[b, h, s, 0], Dh)
                    row_dot = row_dot + dprobs[j] * weight
            # in the forward pass this was: P = softmax(e); then e = q_t·k_s/√Dh
            for j in range(W):
                weight = probs[b, h, t, j]
                if weight != 0:
                    s = p - window + j
                    weight = weight * (dprobs[j] - row_dot) * scale  # dE_tj/√Dh
                    axpy(&dq[b, h, t, 0], &k[b, h, s, 0], weight, Dh)
                    axpy(&dk[b, h, s, 0], &q[b, h, t, 0], weight, Dh)


# --- the Python entry points -----------------------------------------------------------------

def _window_checked(window):
    if isinstance(window, bool) or not isinstance(window, (int, np.integer)) or window < 0:
        raise ValueError(f"banded attention window w must be an integer ≥ 0, got {window!r}")
    return int(window)


def _dtype_of(*arrays):
    dtype = np.result_type(*arrays)
    if dtype != np.float32 and dtype != np.float64:
        raise ValueError(f"the banded attention kernels take float32 or float64 arrays, got {dtype}")
    return dtype


def band_width(window, causal):
    """W, the keys in a band: 2w + 1, or w + 1 when causal."""
    return window + 1 if causal else 2 * window + 1


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
    dtype = _dtype_of(q, k, v)
    q, k, v = (np.ascontiguousarray(x, dtype=dtype) for x in (q, k, v))
    keep = np.ones((B, S), np.uint8) if key_keep is None else np.ascontiguousarray(
        np.broadcast_to(np.asarray(key_keep, bool), (B, S)), dtype=np.uint8)
    W = band_width(window, causal)
    out = np.zeros((B, H, T, Dh), dtype=dtype)  # (B, H, T, Dh)
    probs = np.zeros((B, H, T, W), dtype=dtype)  # (B, H, T, W)
    if out.size == 0 or S == 0:
        return out, probs
    cdef int n_threads = min(mt_max_threads(), B * H)
    if dtype == np.float32:
        forward_all[float](q, k, v, keep, window, causal, probs, out, n_threads)
    else:
        forward_all[double](q, k, v, keep, window, causal, probs, out, n_threads)
    return out, probs


def banded_backward(dout, q, k, v, probs, window):
    """dout (B, H, T, Dh), the forward's q, k, v, probs (B, H, T, W) and window
    -> dq (B, H, T, Dh), dk (B, H, S, Dh), dv (B, H, S, Dh)."""
    window = _window_checked(window)
    dtype = _dtype_of(dout, q, k, v, probs)
    dout, q, k, v, probs = (np.ascontiguousarray(x, dtype=dtype) for x in (dout, q, k, v, probs))
    B, H, T, Dh = q.shape
    S = k.shape[2]
    if dout.shape != q.shape or probs.shape[:3] != (B, H, T) or probs.shape[3] not in (window + 1, 2 * window + 1):
        raise ValueError(f"dout {dout.shape} or probs {probs.shape} do not fit q {q.shape} and window {window}")
    dq = np.zeros((B, H, T, Dh), dtype=dtype)  # (B, H, T, Dh)
    dk = np.zeros((B, H, S, Dh), dtype=dtype)  # (B, H, S, Dh)
    dv = np.zeros((B, H, S, Dh), dtype=dtype)  # (B, H, S, Dh)
    if dq.size == 0 or S == 0:
        return dq, dk, dv
    cdef int n_threads = min(mt_max_threads(), B * H)
    scratch = np.empty((n_threads, probs.shape[3]), dtype=dtype)  # one row of dP per thread
    if dtype == np.float32:
        backward_all[float](dout, q, k, v, probs, window, dq, dk, dv, scratch, n_threads)
    else:
        backward_all[double](dout, q, k, v, probs, window, dq, dk, dv, scratch, n_threads)
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
