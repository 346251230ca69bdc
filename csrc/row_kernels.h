/* Row kernels: element-wise work on one row (of attention scores, of logits, of LayerNorm
   features), and the dropout mask.

   This file is the code for one float type and one instruction set; kernel_path.h
   includes it once per pair, with MK_REAL, MK_SFX, MK_TARGET (see microkernel.h) and
   MK_EXP (kernels.h's exp for MK_REAL) defined.

   They are C rather than Cython for one reason: a sum (or max) over a row only becomes
   SIMD code when the compiler may add the terms in another order, and
   `#pragma omp simd reduction(...)` grants that for one loop (setup.py always compiles
   with -fopenmp-simd, which honours these pragmas even where OpenMP's threads are not
   available). -ffast-math, which would grant it for the whole file, would also let the
   compiler assume that no value is infinite, which the masking relies on.

   Attention's mask arrives additive, as in softmax(Q·Kᵀ/√Dh + M): a row of M is 0 where
   the key is allowed and −∞ where it is masked, in the scores' own float type. Adding it
   is one vector add; a byte mask would mix 1- and 4-byte lanes in one loop, which GCC
   vectorizes poorly (measured: 3.5× slower for mask + max + exp).

   The kernels, for `real` = MK_REAL:
       mk_mask_and_max   row += mask_row (skipped when NULL); returns max(row), −∞ when
                         every entry is masked
       mk_exp_sum        row[s] := exp(row[s] − shift); returns Σ row
       mk_dot            Σ x[s]·y[s]
       mk_sum            Σ x[s]
       mk_axpy           y[s] += a·x[s] (y and x never overlap: `restrict` lets it vectorize)
       mk_dropout        y := x · scale where the hash of (key, index) keeps the unit, else 0;
                         keep[s] := 1 or 0 (see kernels.h for the generator)
       mk_masked_scale   dx := dy · scale where keep, else 0 (dropout's backward)          */

#define MK_CAT_(a, b) a##_##b
#define MK_CAT(a, b) MK_CAT_(a, b)
#define MK_NAME(name) MK_CAT(name, MK_SFX)

MK_TARGET static MK_REAL MK_NAME(mk_mask_and_max)(MK_REAL *row, const MK_REAL *mask_row, int n) {
    MK_REAL best = -INFINITY;
    if (mask_row == NULL) {
#pragma omp simd reduction(max : best)
        for (int s = 0; s < n; s++)
            best = row[s] > best ? row[s] : best;
    } else {
#pragma omp simd reduction(max : best)
        for (int s = 0; s < n; s++) {
            row[s] += mask_row[s];
            best = row[s] > best ? row[s] : best;
        }
    }
    return best;
}

MK_TARGET static MK_REAL MK_NAME(mk_exp_sum)(MK_REAL *row, int n, MK_REAL shift) {
    MK_REAL total = 0;
#pragma omp simd reduction(+ : total)
    for (int s = 0; s < n; s++) {
        row[s] = MK_EXP(row[s] - shift);
        total += row[s];
    }
    return total;
}

MK_TARGET static MK_REAL MK_NAME(mk_dot)(const MK_REAL *x, const MK_REAL *y, int n) {
    MK_REAL total = 0;
#pragma omp simd reduction(+ : total)
    for (int s = 0; s < n; s++)
        total += x[s] * y[s];
    return total;
}

MK_TARGET static MK_REAL MK_NAME(mk_sum)(const MK_REAL *x, int n) {
    MK_REAL total = 0;
#pragma omp simd reduction(+ : total)
    for (int s = 0; s < n; s++)
        total += x[s];
    return total;
}

MK_TARGET static void MK_NAME(mk_axpy)(MK_REAL *restrict y, const MK_REAL *restrict x, MK_REAL a, int n) {
#pragma omp simd
    for (int s = 0; s < n; s++)
        y[s] += a * x[s];
}

/* Elements first .. first + n − 1 of a tensor (flat C order), so that threads can share
   one tensor out and draw exactly what one thread would. */
MK_TARGET static void MK_NAME(mk_dropout)(const MK_REAL *x, MK_REAL *y, uint8_t *keep, int64_t first,
                                          int64_t n, uint64_t key, uint32_t threshold, MK_REAL scale) {
    uint32_t key_lo = (uint32_t) key, key_hi = (uint32_t) (key >> 32);
#pragma omp simd
    for (int64_t s = 0; s < n; s++) {
        int kept = mt_dropout_bits((uint32_t) (first + s), key_lo, key_hi) >= threshold;
        keep[s] = (uint8_t) kept;
        y[s] = kept ? x[s] * scale : (MK_REAL) 0;
    }
}

MK_TARGET static void MK_NAME(mk_masked_scale)(const MK_REAL *dy, const uint8_t *keep, MK_REAL *dx,
                                               int64_t n, MK_REAL scale) {
#pragma omp simd
    for (int64_t s = 0; s < n; s++)
        dx[s] = keep[s] ? dy[s] * scale : (MK_REAL) 0;
}

#undef MK_NAME
#undef MK_CAT
#undef MK_CAT_
