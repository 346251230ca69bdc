"""The attention core, compiled: fused forward and backward kernels, plain and blocked.

Size letters: B batch, H heads, T queries, S keys, Dh head width; Tb, Sb the rows and
columns of one block.

The math is the reference's (minitransformer/layers/attention.py), with scale = 1/√Dh:

    forward    S = scale·Q·Kᵀ,  masked,  P = softmax(S) row by row,  O = P·V
    backward   dV = Pᵀ·dO,  dP = dO·Vᵀ,  dS = P ⊙ (dP − rowsum(dP ⊙ P)),
               dQ = scale·dS·K,  dK = scale·dSᵀ·Q

and the blocked versions compute the same without storing P (the algorithm is explained
in minitransformer/layers/blocked_attention.py, their NumPy reference).

How the work is laid out:
  * One (b, h) pair is one independent attention problem: the kernels share them out
    over OpenMP threads with prange, and the blocked forward also splits each problem into
    its query blocks, which are independent too. The plain kernels hand problems out one
    at a time as threads come free (a dynamic schedule): on cores shared with other
    processes, a thread that loses its core then holds up one problem, not a fixed half of
    them. The blocked forward keeps a static schedule, so that a thread's items are
    consecutive and its kᵀ is made once per problem. Either way a problem is computed by
    one thread from start to finish, so the results do not depend on the thread count.
  * The matrix products of a problem run on the thread that owns the problem, through
    one portable micro-kernel (csrc/microkernel.h) compiled for every instruction set
    and chosen when the module loads (csrc/kernels.h: AVX-512, AVX2 + FMA, NEON or the
    baseline). It reads its right operand by rows, so the kernels give it kᵀ and vᵀ as
    transposed copies, made once per problem.
  * The plain kernels take a problem's queries a block of rows at a time (ROW_BLOCK_BYTES):
    the scores of a block are made, turned into weights and multiplied by V while they are
    still in the core's cache. The row work (mask, max, exp, sum, normalize) runs on each
    row right after the product wrote it, in short SIMD loops (csrc/row_kernels.h), never
    as whole-array passes.
  * float32 and float64 come from one source through the fused type `floating`.
  * Inputs need a contiguous last axis only: the (T, Dh) matrix of one head may have any
    row stride, which the products take as its "leading dimension". split_heads produces
    such views, so the model's q, k, v are used in place, without a copy.
  * The boolean mask becomes additive, M = 0 where allowed and −∞ where masked, as in
    softmax(S + M): in the scores' float type and in the mask's own shape, broadcast to
    (B, H, T, S) by strides (0 along the broadcast axes). A (B, 1, 1, S) padding mask
    gives B·S numbers; no (B, H, T, S) array is made.

What profiling taught (perf, 2 cores, float32; the choices above):
  * With scalar expf and unvectorized row sums, the row work cost as much as the two
    matrix products of the forward (21 ms of 44 on one thread, B=4, H=8, T=S=512). SIMD
    row kernels (csrc/row_kernels.h) brought it to 3 % of the profile.
  * A multithreaded BLAS called from inside the prange threads oversubscribed the cores:
    forward + backward took 2.9 s instead of 0.09 s. The kernels call no BLAS now.
  * Idle OpenMP threads that spin between calls took the cores from everything else
    (36 ms instead of 5 ms at T = S = 32): minitransformer/_ext/__init__.py makes them sleep.
  * With BLAS, the products were 85–95 % of the time, and a third of that was BLAS copying
    its operands into its own layout (at B=64, H=4, T=S=32, where each product is
    32×32×64). The micro-kernel uses the operands where they lie, in the widest registers
    the CPU has. The figures, per machine and instruction-set path, are in
    bench/results/<cpu>-<isa>/attention.md.
"""

cimport cython
from cython cimport floating, view
from cython.parallel cimport prange, threadid
from libc.math cimport sqrt, INFINITY
from libc.string cimport memset

from kernels cimport dot, exp_, exp_sum, fma_steps, gemm, log_, mask_and_max, scale_row, transpose
cimport kernels

import time

import numpy as np

from minitransformer.arrays import float_dtype

KERNEL = "the Cython attention kernels"  # for the error messages

cdef extern from "kernels.h" nogil:
    int mt_max_threads()  # OpenMP's threads for a parallel loop; 1 without OpenMP
    void mt_set_max_threads(int n)


# --- the row work particular to attention (the shared row kernels are in kernels.pxd) ----

@cython.boundscheck(False)
@cython.wraparound(False)
cdef inline void softmax_backward_row(const floating *probs, floating *dprobs, int n,
                                      floating row_dot) noexcept nogil:
    """dprobs := probs ⊙ (dprobs − row_dot): the softmax backward of one row, in place."""
    cdef int s
    for s in range(n):
        dprobs[s] = probs[s] * (dprobs[s] - row_dot)


@cython.boundscheck(False)
@cython.wraparound(False)
cdef inline bint block_has_allowed(const floating *mask, Py_ssize_t mask_stride_t,
                                   int rows, int cols) noexcept nogil:
    """True when some entry of a (rows, cols) block of the additive mask is 0 (allowed)."""
    cdef int t, s
    for t in range(rows):
        for s in range(cols):
            if mask[t * mask_stride_t + s] == 0:
                return True
    return False


# --- the operands of the products -------------------------------------------------------
# The micro-kernel (kernels.pxd: gemm) reads its right operand B along its rows, so the
# products with Kᵀ and Vᵀ take a transposed copy, made once per problem.

cdef inline const floating *transposed(const floating *x, int ldx, int rows, int cols,
                                       floating *scratch) noexcept nogil:
    """Xᵀ (cols, rows), row stride `rows`, copied into scratch: x (rows, cols) has row stride ldx."""
    transpose(rows, cols, x, ldx, scratch, rows)
    return scratch


# --- the plain kernels: one (b, h) problem, P stored ---------------------------------------
# Pointers point at one head's matrices; ld* are their row strides in elements. mask
# points at the head's (T, S) additive mask, rows mask_stride_t elements apart (0 when
# every query has the same mask), or is NULL.

@cython.boundscheck(False)
@cython.wraparound(False)
cdef void forward_head(const floating *q, int ldq, const floating *k, int ldk,
                       const floating *v, int ldv,
                       const floating *mask, Py_ssize_t mask_stride_t,
                       floating *probs, floating *out,
                       int T, int S, int Dh, int row_block, floating scale,
                       floating *k_t) noexcept nogil:
    """q (T, Dh), k, v (S, Dh) -> probs (T, S) = softmax(scale·q·kᵀ + M), out (T, Dh).

    The queries are taken row_block at a time, so that a block's scores stay in cache
    from the product that makes them to the product that uses them. k_t is scratch for
    kᵀ (Dh, S).
    """
    cdef int block, t0, Tb, t
    cdef floating *row
    cdef const floating *mask_row = NULL
    cdef floating row_max, row_sum
    cdef const floating *keys = transposed(k, ldk, S, Dh, k_t)  # kᵀ (Dh, S)
    for block in range((T + row_block - 1) // row_block):
        t0 = block * row_block
        Tb = min(row_block, T - t0)
        # pass 1: scores = scale · Q·Kᵀ, written straight into probs, which they become
        gemm(False, Tb, S, Dh, scale, q + t0 * ldq, ldq, keys, S,
             <floating> 0, probs + t0 * S, S)  # (Tb, S)
        # passes 2 and 3, one row at a time while it is in cache: mask and max, exp and sum, divide
        for t in range(t0, t0 + Tb):
            row = probs + t * S
            if mask != NULL:
                mask_row = mask + t * mask_stride_t
            row_max = mask_and_max(row, mask_row, S)
            if row_max == -INFINITY:
                # every key of this row is masked: zero weights (so zero output), never NaN
                memset(row, 0, S * sizeof(floating))
                continue
            row_sum = exp_sum(row, S, row_max)  # ≥ 1: the maximum contributes exp(0)
            scale_row(row, S, 1 / row_sum)
        # pass 4: the weighted average of the values
        gemm(False, Tb, Dh, S, <floating> 1, probs + t0 * S, S, v, ldv,
             <floating> 0, out + t0 * Dh, Dh)  # (Tb, Dh)


@cython.boundscheck(False)
@cython.wraparound(False)
cdef void backward_head(const floating *dout, int lddo, const floating *q, int ldq,
                        const floating *k, int ldk, const floating *v, int ldv,
                        const floating *probs, int ldp, floating *dscores,
                        floating *dq, floating *dk, floating *dv,
                        int T, int S, int Dh, int row_block, floating scale,
                        floating *v_t) noexcept nogil:
    """dout (T, Dh) and the forward's probs (T, S) -> dq (T, Dh), dk (S, Dh), dv (S, Dh).

    The queries are taken row_block at a time: dS of one block is made, used by two
    products and dropped while still in cache; dK and dV gather a term from every block
    (beta = 1 after the first). Scratch: dscores (row_block, S), v_t for vᵀ (Dh, S).
    dq, dk, dv are dense (row stride Dh).
    """
    cdef int block, t0, Tb, t
    cdef floating row_dot, beta
    cdef const floating *values = transposed(v, ldv, S, Dh, v_t)  # vᵀ (Dh, S)
    for block in range((T + row_block - 1) // row_block):
        t0 = block * row_block
        Tb = min(row_block, T - t0)
        beta = 0 if block == 0 else 1
        # in the forward pass this was: out = probs · v
        gemm(True, S, Dh, Tb, <floating> 1, probs + t0 * ldp, ldp, dout + t0 * lddo, lddo,
             beta, dv, Dh)  # (S, Dh)
        gemm(False, Tb, S, Dh, <floating> 1, dout + t0 * lddo, lddo, values, S,
             <floating> 0, dscores, S)  # dP (Tb, S)
        # in the forward pass this was: probs = softmax(scores); one row-sum replaces the
        # Jacobian, and masked entries, where probs = 0, get dS = 0: the mask needs no backward
        for t in range(Tb):
            row_dot = dot(dscores + t * S, probs + (t0 + t) * ldp, S)
            softmax_backward_row(probs + (t0 + t) * ldp, dscores + t * S, S, row_dot)  # dS (Tb, S)
        # in the forward pass this was: scores = scale · q · kᵀ
        gemm(False, Tb, Dh, S, scale, dscores, S, k, ldk, <floating> 0, dq + t0 * Dh, Dh)  # (Tb, Dh)
        gemm(True, S, Dh, Tb, scale, dscores, S, q + t0 * ldq, ldq, beta, dk, Dh)  # (S, Dh)


# --- the blocked kernels: P never stored ---------------------------------------------------

@cython.boundscheck(False)
@cython.wraparound(False)
cdef void forward_query_block(const floating *q, int ldq, const floating *k_t,
                              const floating *v, int ldv,
                              const floating *mask, Py_ssize_t mask_stride_t,
                              floating *out, floating *logsumexp,
                              int Tb, int S, int Dh, int block_size, floating scale,
                              floating *weights, floating *row_max, floating *row_sum) noexcept nogil:
    """One query block: q (Tb, Dh), kᵀ (Dh, S), v (S, Dh) -> out (Tb, Dh) (row stride Dh),
    logsumexp (Tb,).

    k_t is the transposed copy of k, row stride S. Scratch: weights
    (Tb, block_size), row_max (Tb,), row_sum (Tb,). Until the last key block, the rows of
    out hold acc, the running sum of exp(s − m)·v.
    """
    cdef int key_index, s0, Sb, t
    cdef floating *row
    cdef const floating *mask_row = NULL
    cdef floating new_max, rescale
    memset(out, 0, Tb * Dh * sizeof(floating))
    for t in range(Tb):
        row_max[t] = -INFINITY
        row_sum[t] = 0
    for key_index in range((S + block_size - 1) // block_size):
        s0 = key_index * block_size
        Sb = min(block_size, S - s0)
        # a block that the mask closes entirely (above a causal diagonal, or all padding)
        # adds nothing: skip its matrix products
        if mask != NULL and not block_has_allowed(mask + s0, mask_stride_t, Tb, Sb):
            continue
        gemm(False, Tb, Sb, Dh, scale, q, ldq, k_t + s0, S,
             <floating> 0, weights, block_size)  # scores (Tb, Sb)
        for t in range(Tb):
            row = weights + t * block_size
            if mask != NULL:
                mask_row = mask + t * mask_stride_t + s0
            new_max = max(row_max[t], mask_and_max(row, mask_row, Sb))
            if new_max == -INFINITY:
                # no allowed key in this row yet: it gathers nothing from this block
                memset(row, 0, Sb * sizeof(floating))
                continue
            # what was gathered against the old maximum, remeasured against the new one
            # (0 when nothing was gathered yet: libm's exp(−∞) = 0)
            rescale = exp_(row_max[t] - new_max)
            row_sum[t] = rescale * row_sum[t] + exp_sum(row, Sb, new_max)
            if rescale != 1:
                scale_row(out + t * Dh, Dh, rescale)
            row_max[t] = new_max
        # acc += exp(S_j − m) · V_j
        gemm(False, Tb, Dh, Sb, <floating> 1, weights, block_size, v + s0 * ldv, ldv,
             <floating> 1, out, Dh)  # (Tb, Dh)
    for t in range(Tb):
        if row_sum[t] > 0:
            scale_row(out + t * Dh, Dh, 1 / row_sum[t])
            logsumexp[t] = row_max[t] + log_(row_sum[t])
        else:
            logsumexp[t] = -INFINITY  # every key masked: the output row stays 0


@cython.boundscheck(False)
@cython.wraparound(False)
cdef void backward_head_blocked(const floating *dout, int lddo, const floating *q, int ldq,
                                const floating *k, int ldk, const floating *v, int ldv,
                                const floating *out, int ldo, const floating *logsumexp,
                                const floating *mask, Py_ssize_t mask_stride_t,
                                floating *dq, floating *dk, floating *dv,
                                int T, int S, int Dh, int block_size, floating scale,
                                floating *probs, floating *dscores, floating *row_dot,
                                floating *k_t, floating *v_t) noexcept nogil:
    """One (b, h) problem -> dq (T, Dh), dk, dv (S, Dh), dense (row stride Dh) and zeroed.

    Scratch: probs and dscores (block_size, block_size), row_dot (T,), k_t and v_t for
    kᵀ and vᵀ (Dh, S).
    """
    cdef int key_index, query_block, s0, t0, Sb, Tb, t
    cdef floating *row
    cdef const floating *mask_block = NULL
    cdef const floating *mask_row = NULL
    # D = rowsum(dO ⊙ O) stands in for rowsum(dP ⊙ P), which would need a whole row of P
    for t in range(T):
        row_dot[t] = dot(dout + t * lddo, out + t * ldo, Dh)
    cdef const floating *keys = transposed(k, ldk, S, Dh, k_t)  # kᵀ (Dh, S)
    cdef const floating *values = transposed(v, ldv, S, Dh, v_t)  # vᵀ (Dh, S)
    for key_index in range((S + block_size - 1) // block_size):
        s0 = key_index * block_size
        Sb = min(block_size, S - s0)
        for query_block in range((T + block_size - 1) // block_size):
            t0 = query_block * block_size
            Tb = min(block_size, T - t0)
            if mask != NULL:
                mask_block = mask + t0 * mask_stride_t + s0
                if not block_has_allowed(mask_block, mask_stride_t, Tb, Sb):
                    continue
            # in the forward pass this was: weights = exp(scores − m), divided by l at the end;
            # exp(scores − L) is both steps at once
            gemm(False, Tb, Sb, Dh, scale, q + t0 * ldq, ldq, keys + s0, S,
                 <floating> 0, probs, block_size)  # scores (Tb, Sb)
            for t in range(Tb):
                row = probs + t * block_size
                if logsumexp[t0 + t] == -INFINITY:
                    memset(row, 0, Sb * sizeof(floating))  # a row with every key masked
                    continue
                if mask != NULL:
                    mask_row = mask_block + t * mask_stride_t
                mask_and_max(row, mask_row, Sb)
                exp_sum(row, Sb, logsumexp[t0 + t])  # P (Tb, Sb)
            # in the forward pass this was: acc += weights · V_j
            gemm(True, Sb, Dh, Tb, <floating> 1, probs, block_size, dout + t0 * lddo, lddo,
                 <floating> 1, dv + s0 * Dh, Dh)  # (Sb, Dh)
            gemm(False, Tb, Sb, Dh, <floating> 1, dout + t0 * lddo, lddo, values + s0, S,
                 <floating> 0, dscores, block_size)  # dP (Tb, Sb)
            for t in range(Tb):
                softmax_backward_row(probs + t * block_size, dscores + t * block_size, Sb,
                                     row_dot[t0 + t])  # dS (Tb, Sb)
            # in the forward pass this was: scores = scale · Q_i · K_jᵀ
            gemm(False, Tb, Dh, Sb, scale, dscores, block_size, k + s0 * ldk, ldk,
                 <floating> 1, dq + t0 * Dh, Dh)  # (Tb, Dh)
            gemm(True, Sb, Dh, Tb, scale, dscores, block_size, q + t0 * ldq, ldq,
                 <floating> 1, dk + s0 * Dh, Dh)  # (Sb, Dh)


# --- the parallel loops over problems ------------------------------------------------------
# They take typed memoryviews (converted from the arrays while the GIL is held), compute
# the row strides once, and release the GIL for the prange over (b, h). An input is
# declared [:, :, :, ::view.contiguous]: its last axis contiguous, the others any stride
# (`::1` there would demand a C-contiguous array, and so a copy of every split_heads view).

cdef struct AdditiveMask:
    # M broadcast to (B, H, T, S) in the kernels' float type: 0 allowed, −∞ masked.
    # data is NULL when there is no mask; it is a byte address, cast at each use.
    const char *data
    # strides in bytes, 0 along every broadcast axis; along S the entries are contiguous
    Py_ssize_t stride_b, stride_h, stride_t


cdef inline const floating *head_mask(AdditiveMask mask, int b, int h, floating dtype_tag) noexcept nogil:
    """The (T, S) mask of head (b, h), or NULL. (dtype_tag only selects the float type.)"""
    if mask.data == NULL:
        return NULL
    return <const floating *> (mask.data + b * mask.stride_b + h * mask.stride_h)


cdef inline int leading_dim(const floating[:, :, :, ::view.contiguous] x) noexcept nogil:
    """The row stride, in elements, of each (b, h) matrix of x (B, H, rows, cols); with one
    row any value ≥ cols will do."""
    return <int> (x.strides[2] // sizeof(floating)) if x.shape[2] > 1 else <int> x.shape[3]


@cython.boundscheck(False)
@cython.wraparound(False)
@cython.cdivision(True)
@cython.initializedcheck(False)
cdef void forward_all(const floating[:, :, :, ::view.contiguous] q,
                      const floating[:, :, :, ::view.contiguous] k,
                      const floating[:, :, :, ::view.contiguous] v, AdditiveMask mask,
                      floating[:, :, :, ::1] probs, floating[:, :, :, ::1] out,
                      floating[:, ::1] scratch, int row_block, int n_threads) noexcept:
    cdef int B = q.shape[0], H = q.shape[1], T = q.shape[2], Dh = q.shape[3], S = k.shape[2]
    cdef int ldq = leading_dim(q), ldk = leading_dim(k), ldv = leading_dim(v)
    cdef Py_ssize_t mask_stride_t = mask.stride_t // sizeof(floating)
    cdef floating scale = 1 / sqrt(<double> Dh)
    cdef int problem, b, h
    for problem in prange(B * H, nogil=True, schedule="dynamic", num_threads=n_threads):
        b = problem // H
        h = problem % H
        forward_head(&q[b, h, 0, 0], ldq, &k[b, h, 0, 0], ldk, &v[b, h, 0, 0], ldv,
                     head_mask(mask, b, h, scale), mask_stride_t,
                     &probs[b, h, 0, 0], &out[b, h, 0, 0], T, S, Dh, row_block, scale,
                     &scratch[threadid(), 0])


@cython.boundscheck(False)
@cython.wraparound(False)
@cython.cdivision(True)
@cython.initializedcheck(False)
cdef void backward_all(const floating[:, :, :, ::view.contiguous] dout,
                       const floating[:, :, :, ::view.contiguous] q,
                       const floating[:, :, :, ::view.contiguous] k,
                       const floating[:, :, :, ::view.contiguous] v,
                       const floating[:, :, :, ::view.contiguous] probs,
                       floating[:, :, :, ::1] dq, floating[:, :, :, ::1] dk, floating[:, :, :, ::1] dv,
                       floating[:, ::1] scratch, int row_block, int n_threads) noexcept:
    cdef int B = q.shape[0], H = q.shape[1], T = q.shape[2], Dh = q.shape[3], S = k.shape[2]
    cdef int lddo = leading_dim(dout), ldq = leading_dim(q), ldk = leading_dim(k), ldv = leading_dim(v)
    cdef int ldp = leading_dim(probs)
    cdef floating scale = 1 / sqrt(<double> Dh)
    cdef int problem, b, h
    cdef floating *own
    for problem in prange(B * H, nogil=True, schedule="dynamic", num_threads=n_threads):
        b = problem // H
        h = problem % H
        own = &scratch[threadid(), 0]  # dS (row_block, S), then vᵀ (Dh, S)
        backward_head(&dout[b, h, 0, 0], lddo, &q[b, h, 0, 0], ldq, &k[b, h, 0, 0], ldk,
                      &v[b, h, 0, 0], ldv, &probs[b, h, 0, 0], ldp, own,
                      &dq[b, h, 0, 0], &dk[b, h, 0, 0], &dv[b, h, 0, 0], T, S, Dh, row_block,
                      scale, own + row_block * S)


@cython.boundscheck(False)
@cython.wraparound(False)
@cython.cdivision(True)
@cython.initializedcheck(False)
cdef void forward_blocked_all(const floating[:, :, :, ::view.contiguous] q,
                              const floating[:, :, :, ::view.contiguous] k,
                              const floating[:, :, :, ::view.contiguous] v, AdditiveMask mask,
                              floating[:, :, :, ::1] out, floating[:, :, ::1] logsumexp,
                              int block_size, floating[:, ::1] scratch, int n_threads) noexcept:
    cdef int B = q.shape[0], H = q.shape[1], T = q.shape[2], Dh = q.shape[3], S = k.shape[2]
    cdef int ldq = leading_dim(q), ldk = leading_dim(k), ldv = leading_dim(v)
    cdef Py_ssize_t mask_stride_t = mask.stride_t // sizeof(floating)
    cdef floating scale = 1 / sqrt(<double> Dh)
    cdef int n_query_blocks = (T + block_size - 1) // block_size
    cdef int item, b, h, t0, problem
    cdef floating *weights
    cdef floating *k_t
    cdef const floating *mask_block
    cdef int[::1] holds = np.full(n_threads, -1, dtype=np.intc)  # whose kᵀ each thread holds
    # the work items are (b, h, query block), all independent, so all shared out at once
    for item in prange(B * H * n_query_blocks, nogil=True, schedule="static", num_threads=n_threads):
        problem = item // n_query_blocks
        b = problem // H
        h = problem % H
        t0 = (item % n_query_blocks) * block_size
        mask_block = head_mask(mask, b, h, scale)
        if mask_block != NULL:
            mask_block = mask_block + t0 * mask_stride_t
        weights = &scratch[threadid(), 0]  # then row_max and row_sum, block_size each, then kᵀ
        k_t = weights + block_size * block_size + 2 * block_size
        # a thread's items are consecutive, so mostly of one problem: kᵀ is made once for them
        if holds[threadid()] != problem:
            transposed(&k[b, h, 0, 0], ldk, S, Dh, k_t)
            holds[threadid()] = problem
        forward_query_block(&q[b, h, t0, 0], ldq, k_t, &v[b, h, 0, 0], ldv,
                            mask_block, mask_stride_t, &out[b, h, t0, 0], &logsumexp[b, h, t0],
                            min(block_size, T - t0), S, Dh, block_size, scale,
                            weights, weights + block_size * block_size,
                            weights + block_size * block_size + block_size)


@cython.boundscheck(False)
@cython.wraparound(False)
@cython.cdivision(True)
@cython.initializedcheck(False)
cdef void backward_blocked_all(const floating[:, :, :, ::view.contiguous] dout,
                               const floating[:, :, :, ::view.contiguous] q,
                               const floating[:, :, :, ::view.contiguous] k,
                               const floating[:, :, :, ::view.contiguous] v,
                               const floating[:, :, :, ::view.contiguous] out,
                               const floating[:, :, ::1] logsumexp,
                               AdditiveMask mask,
                               floating[:, :, :, ::1] dq, floating[:, :, :, ::1] dk, floating[:, :, :, ::1] dv,
                               int block_size, floating[:, ::1] scratch, int n_threads) noexcept:
    cdef int B = q.shape[0], H = q.shape[1], T = q.shape[2], Dh = q.shape[3], S = k.shape[2]
    cdef int lddo = leading_dim(dout), ldq = leading_dim(q), ldk = leading_dim(k), ldv = leading_dim(v)
    cdef int ldo = leading_dim(out)
    cdef Py_ssize_t mask_stride_t = mask.stride_t // sizeof(floating)
    cdef floating scale = 1 / sqrt(<double> Dh)
    cdef int problem, b, h
    cdef floating *tiles
    # parallel over (b, h) only: all the query blocks of a problem add into its dK and dV
    for problem in prange(B * H, nogil=True, schedule="dynamic", num_threads=n_threads):
        b = problem // H
        h = problem % H
        # probs, dscores (block_size² each), row_dot (T), then kᵀ and vᵀ (Dh, S)
        tiles = &scratch[threadid(), 0]
        backward_head_blocked(&dout[b, h, 0, 0], lddo, &q[b, h, 0, 0], ldq, &k[b, h, 0, 0], ldk,
                              &v[b, h, 0, 0], ldv, &out[b, h, 0, 0], ldo, &logsumexp[b, h, 0],
                              head_mask(mask, b, h, scale), mask_stride_t,
                              &dq[b, h, 0, 0], &dk[b, h, 0, 0], &dv[b, h, 0, 0],
                              T, S, Dh, block_size, scale,
                              tiles, tiles + block_size * block_size,
                              tiles + 2 * block_size * block_size,
                              tiles + 2 * block_size * block_size + T,
                              tiles + 2 * block_size * block_size + T + Dh * S)


# --- the Python entry points: check, prepare, allocate, call ------------------------------

def max_threads():
    """The number of OpenMP threads the kernels use (OMP_NUM_THREADS; 1 without OpenMP)."""
    return mt_max_threads()


def set_max_threads(n_threads):
    """Use at most n_threads OpenMP threads from now on, in calls from this thread."""
    if isinstance(n_threads, bool) or not isinstance(n_threads, (int, np.integer)) or n_threads < 1:
        raise ValueError(f"n_threads must be a positive integer, got {n_threads!r}")
    mt_set_max_threads(n_threads)


def _check_shapes(q, k, v):
    """The rank and size checks that keep the kernels inside their arrays."""
    if q.ndim != 4 or k.ndim != 4 or v.ndim != 4:
        raise ValueError(
            f"attention expects q, k, v of rank 4 (B, H, T, Dh); got shapes {q.shape}, {k.shape}, {v.shape}"
        )
    if k.shape[:2] != q.shape[:2] or k.shape[3] != q.shape[3]:
        raise ValueError(f"k has shape {k.shape}, which does not fit q of shape {q.shape}")
    if v.shape != k.shape:
        raise ValueError(f"v has shape {v.shape} but k has shape {k.shape}")


def _check_same_shape(x, expected, name):
    if tuple(x.shape) != tuple(expected):
        raise ValueError(f"{name} has shape {tuple(x.shape)}, expected {tuple(expected)}")


def _rows_ready(x, dtype):
    """x (rank 4) as `dtype`, with a contiguous last axis and usable strides; copied only if not.

    Each (b, h) slice goes to the products as a row-major matrix with a row stride, so the
    batch and head axes may have any non-negative stride and the rows any stride at least
    a row long. Anything else (another dtype, a reversed or overlapping view, a strided
    last axis, unaligned data) is copied into a fresh C-contiguous array.
    """
    if x.dtype != dtype:
        return np.ascontiguousarray(x, dtype=dtype)
    itemsize = x.itemsize
    usable = (
        x.flags.aligned
        and x.strides[3] == itemsize
        and all(stride >= 0 and stride % itemsize == 0 for stride in x.strides)
        and (x.shape[2] <= 1 or x.strides[2] >= x.shape[3] * itemsize)
    )
    return x if usable else np.ascontiguousarray(x)


def _forward_inputs(q, k, v):
    """q (B, H, T, Dh), k, v (B, H, S, Dh) checked and made ready (_rows_ready) -> q, k, v, dtype."""
    q, k, v = np.asarray(q), np.asarray(k), np.asarray(v)
    _check_shapes(q, k, v)
    dtype = float_dtype(q, k, v, kernel=KERNEL)
    return _rows_ready(q, dtype), _rows_ready(k, dtype), _rows_ready(v, dtype), dtype


def _backward_inputs(dout, q, k, v, saved, saved_name):
    """dout (B, H, T, Dh), the forward's q, k, v and what it saved for the backward:
    saved_name "probs" (B, H, T, S) from the plain forward, "out" (B, H, T, Dh) from the
    blocked one; checked and made ready -> dout, q, k, v, saved, dtype."""
    dout, q, k, v, saved = (np.asarray(x) for x in (dout, q, k, v, saved))
    _check_shapes(q, k, v)
    _check_same_shape(dout, q.shape, "dout")
    _check_same_shape(saved, q.shape[:3] + k.shape[2:3] if saved_name == "probs" else q.shape, saved_name)
    dtype = float_dtype(dout, q, k, v, saved, kernel=KERNEL)
    return (*(_rows_ready(x, dtype) for x in (dout, q, k, v, saved)), dtype)


def _gradients(q, k, dtype, allocate):
    """dq (B, H, T, Dh), dk (B, H, S, Dh), dv (B, H, S, Dh), made by ``allocate``
    (np.empty where the kernel writes every entry, np.zeros where it adds into them)."""
    return allocate(q.shape, dtype=dtype), allocate(k.shape, dtype=dtype), allocate(k.shape, dtype=dtype)


cdef AdditiveMask _additive_mask(object mask, tuple shape, object dtype, list keep_alive) except *:
    """M = 0 where mask is True, −∞ where False, broadcast to `shape` = (B, H, T, S) by strides.

    M has the boolean mask's own shape (a (B, 1, 1, S) padding mask gives B·S numbers),
    with the key axis filled out to S when the mask broadcasts along it; the (B, H, T, S)
    array is never made.
    """
    cdef AdditiveMask view
    view.data = NULL
    view.stride_b = view.stride_h = view.stride_t = 0
    if mask is None:
        return view
    mask = np.asarray(mask)
    if mask.dtype != np.bool_:
        raise ValueError(f"the attention mask must be boolean (True = may attend), got {mask.dtype}")
    if mask.ndim != 4 or any(m not in (1, n) for m, n in zip(mask.shape, shape)):
        raise ValueError(f"attention mask of shape {mask.shape} does not broadcast to (B, H, T, S) = {shape}")
    mask = np.broadcast_to(mask, mask.shape[:3] + (shape[3],))
    additive = np.where(mask, dtype.type(0), dtype.type(-np.inf))  # C-contiguous, mask's shape
    broadcast = np.broadcast_to(additive, shape)  # stride 0 along the broadcast axes
    keep_alive.append(additive)
    view.data = <const char *> <size_t> additive.ctypes.data
    view.stride_b, view.stride_h, view.stride_t = broadcast.strides[:3]
    return view


# Rows of queries the plain kernels take at once: a block of scores (rows, S) of at most
# this many bytes, so that it stays in the core's L2 cache between the product that makes
# it and the one that reads it.
ROW_BLOCK_BYTES = 128 * 1024


def _row_block(T, S, itemsize):
    """How many query rows the plain kernels take at once (see ROW_BLOCK_BYTES)."""
    return max(1, min(T, ROW_BLOCK_BYTES // max(1, S * itemsize)))


# --- the instruction-set paths (csrc/kernels.h) --------------------------------------------

ISA_NAMES = tuple(kernels.mt_isa_names[i].decode() for i in range(kernels.MT_ISA_COUNT))


def _isa_supported():
    """The names of the paths this build has and this CPU runs, best last."""
    order = ("baseline", "neon", "avx2", "avx512")
    return tuple(name for name in order if kernels.mt_isa_supported(ISA_NAMES.index(name)))


def _isa_select(name):
    """Use path `name` (one of _isa_supported()) from now on, in this module."""
    if kernels.mt_isa_select(ISA_NAMES.index(name)) != 0:
        raise ValueError(f"the instruction-set path {name!r} cannot run on this CPU")


def _isa_active():
    """The name of the path in use, and its float32 tile: (name, rows, columns)."""
    active = kernels.mt_active
    return ISA_NAMES[active.isa], active.tile_rows, active.tile_vectors * active.lanes_f32


kernels.mt_isa_select(kernels.mt_isa_best())


@cython.boundscheck(False)
@cython.wraparound(False)
def fma_peak_gflops(n_threads=None, steps=20_000_000, repeats=3):
    """The CPU's float32 peak on the path in use, in GFLOP/s: multiply-adds in vector
    registers on n_threads OpenMP threads at once (default: the kernels' threads), best
    of `repeats`.

    The benchmarks divide by it. It is an upper bound for any matrix product on that path."""
    cdef int threads = mt_max_threads() if n_threads is None else int(n_threads)
    cdef long n = steps
    cdef int i
    cdef float[::1] results = np.zeros(threads, dtype=np.float32)  # kept, so the loops run
    lanes = kernels.mt_active.lanes_f32
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        with nogil:
            for i in prange(threads, schedule="static", num_threads=threads):
                results[i] = fma_steps(n)
        best = min(best, time.perf_counter() - start)
    return 12 * 2 * lanes * n * threads / best / 1e9


def _block_size_checked(block_size):
    if isinstance(block_size, bool) or not isinstance(block_size, (int, np.integer)) or block_size < 1:
        raise ValueError(f"block_size must be a positive integer, got {block_size!r}")
    return int(block_size)


def attention_forward(q, k, v, mask=None):
    """q (B, H, T, Dh), k, v (B, H, S, Dh), mask ~(B, H, T, S) bool or None
    -> out (B, H, T, Dh), probs (B, H, T, S), in the inputs' dtype (float32 or float64)."""
    q, k, v, dtype = _forward_inputs(q, k, v)
    B, H, T, Dh = q.shape
    S = k.shape[2]
    keep_alive = []
    cdef AdditiveMask additive_mask = _additive_mask(mask, (B, H, T, S), dtype, keep_alive)
    out = np.empty((B, H, T, Dh), dtype=dtype)  # (B, H, T, Dh)
    probs = np.empty((B, H, T, S), dtype=dtype)  # (B, H, T, S)
    if out.size == 0 or probs.size == 0:
        # nothing to compute, or no keys at all (S = 0): zero weights, zero output
        return np.zeros_like(out), np.zeros_like(probs)
    cdef int n_threads = min(mt_max_threads(), B * H)  # no more threads than problems
    cdef int row_block = _row_block(T, S, probs.itemsize)
    scratch = np.empty((n_threads, Dh * S), dtype=dtype)  # kᵀ per thread
    if dtype == np.float32:
        forward_all[float](q, k, v, additive_mask, probs, out, scratch, row_block, n_threads)
    else:
        forward_all[double](q, k, v, additive_mask, probs, out, scratch, row_block, n_threads)
    return out, probs


def attention_backward(dout, q, k, v, probs):
    """dout (B, H, T, Dh), probs (B, H, T, S) from the forward
    -> dq (B, H, T, Dh), dk (B, H, S, Dh), dv (B, H, S, Dh)."""
    dout, q, k, v, probs, dtype = _backward_inputs(dout, q, k, v, probs, "probs")
    B, H, T, Dh = q.shape
    S = k.shape[2]
    dq, dk, dv = _gradients(q, k, dtype, np.empty)  # (B, H, T, Dh), (B, H, S, Dh), (B, H, S, Dh)
    if dq.size == 0 or dk.size == 0:
        return np.zeros_like(dq), np.zeros_like(dk), np.zeros_like(dv)
    cdef int n_threads = min(mt_max_threads(), B * H)  # no more threads than problems
    cdef int row_block = _row_block(T, S, dq.itemsize)
    # per thread: one block of dS (row_block, S), then vᵀ (Dh, S)
    scratch = np.empty((n_threads, (row_block + Dh) * S), dtype=dtype)
    if dtype == np.float32:
        backward_all[float](dout, q, k, v, probs, dq, dk, dv, scratch, row_block, n_threads)
    else:
        backward_all[double](dout, q, k, v, probs, dq, dk, dv, scratch, row_block, n_threads)
    return dq, dk, dv


def attention_forward_blocked(q, k, v, mask=None, block_size=64):
    """q (B, H, T, Dh), k, v (B, H, S, Dh), mask ~(B, H, T, S) bool or None
    -> out (B, H, T, Dh), logsumexp (B, H, T) (−∞ on rows with every key masked).
    Memory: the outputs plus, per thread, one (block_size, block_size) tile and kᵀ (Dh, S):
    linear in T and S."""
    block_size = _block_size_checked(block_size)
    q, k, v, dtype = _forward_inputs(q, k, v)
    B, H, T, Dh = q.shape
    S = k.shape[2]
    keep_alive = []
    cdef AdditiveMask additive_mask = _additive_mask(mask, (B, H, T, S), dtype, keep_alive)
    out = np.zeros((B, H, T, Dh), dtype=dtype)  # (B, H, T, Dh)
    logsumexp = np.full((B, H, T), -np.inf, dtype=dtype)  # (B, H, T)
    if out.size == 0 or k.size == 0:
        return out, logsumexp
    cdef int n_threads = min(mt_max_threads(), B * H * ((T + block_size - 1) // block_size))
    # per thread: one (block, block) tile of weights, then the running max and sum per row,
    # then kᵀ (Dh, S)
    scratch = np.empty((n_threads, block_size * block_size + 2 * block_size + Dh * S), dtype=dtype)
    if dtype == np.float32:
        forward_blocked_all[float](q, k, v, additive_mask, out, logsumexp, block_size, scratch, n_threads)
    else:
        forward_blocked_all[double](q, k, v, additive_mask, out, logsumexp, block_size, scratch, n_threads)
    return out, logsumexp


def attention_backward_blocked(dout, q, k, v, out, logsumexp, mask=None, block_size=64):
    """dout (B, H, T, Dh); q, k, v, mask as given to the forward; out (B, H, T, Dh) and
    logsumexp (B, H, T) from attention_forward_blocked
    -> dq (B, H, T, Dh), dk (B, H, S, Dh), dv (B, H, S, Dh)."""
    block_size = _block_size_checked(block_size)
    dout, q, k, v, out, dtype = _backward_inputs(dout, q, k, v, out, "out")
    B, H, T, Dh = q.shape
    S = k.shape[2]
    _check_same_shape(np.asarray(logsumexp), (B, H, T), "logsumexp")
    logsumexp = np.ascontiguousarray(logsumexp, dtype=dtype)
    keep_alive = []
    cdef AdditiveMask additive_mask = _additive_mask(mask, (B, H, T, S), dtype, keep_alive)
    dq, dk, dv = _gradients(q, k, dtype, np.zeros)  # (B, H, T, Dh), (B, H, S, Dh), (B, H, S, Dh)
    if dq.size == 0 or dk.size == 0:
        return dq, dk, dv
    cdef int n_threads = min(mt_max_threads(), B * H)
    # per thread: two (block, block) tiles (P and dS), then D = rowsum(dO ⊙ O) for one head,
    # then kᵀ and vᵀ (Dh, S)
    scratch = np.empty((n_threads, 2 * block_size * block_size + T + 2 * Dh * S), dtype=dtype)
    if dtype == np.float32:
        backward_blocked_all[float](dout, q, k, v, out, logsumexp, additive_mask, dq, dk, dv,
                                    block_size, scratch, n_threads)
    else:
        backward_blocked_all[double](dout, q, k, v, out, logsumexp, additive_mask, dq, dk, dv,
                                     block_size, scratch, n_threads)
    return dq, dk, dv
