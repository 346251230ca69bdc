"""SIMD row kernels shared by the compiled modules in csrc/ (cimported, nothing to import).

One row at a time: a row of attention scores, of logits, of LayerNorm features. The C
block below holds the loops that need SIMD reductions or a vectorizable exp; the
`cdef inline` functions after it pick the float or double version for the fused type.
Every module that cimports this file gets its own copy of the C (all of it `static`).
"""

from cython cimport floating
from libc.math cimport exp, expf, log, logf

cdef extern from *:
    """
    /* ---- Row kernels: element-wise work on one row (of scores, of logits, of features).

       They are C rather than Cython for one reason: a sum (or max) over a row only
       becomes SIMD code when the compiler may add the terms in another order, and
       `#pragma omp simd reduction(...)` grants that for one loop. Cython cannot emit a
       pragma, and -ffast-math, which would grant it for the whole file, would also let
       the compiler assume that no value is infinite, which the masking relies on.
       Without OpenMP the pragmas are ignored: same results, scalar loops.

       Two more settings, both measured:
       * "no-trapping-math", for these functions only: without it GCC keeps the compares
         in exp's clamp as branches (a compare may raise a floating-point exception flag,
         which nobody here reads) and the loops stay scalar, except with AVX-512.
       * MT_CLONES: each row kernel is compiled for AVX-512, AVX2 and the baseline x86-64
         that setup.py's flags target; the best one for the CPU is picked when the module
         loads (GCC's target_clones, x86-64 Linux only; elsewhere the baseline alone).

       Attention's mask arrives additive, as in softmax(Q·Kᵀ/√Dh + M): a row of M is 0
       where the key is allowed and −∞ where it is masked, in the scores' own float type.
       Adding it is one vector add; a byte mask would mix 1- and 4-byte lanes in one loop,
       which GCC vectorizes poorly (measured: 3.5× slower for mask + max + exp). */
    #include <math.h>
    #include <stdint.h>
    #include <string.h>

    #if defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__) && defined(__linux__)
    #define MT_CLONES __attribute__((target_clones("avx512f", "avx2", "default")))
    #else
    #define MT_CLONES
    #endif

    #if defined(__GNUC__) && !defined(__clang__)
    #pragma GCC push_options
    #pragma GCC optimize("no-trapping-math")
    #endif

    /* exp(x) = 2^n · exp(r), with n = round(x / ln 2) and r = x − n·ln 2 in [−ln2/2, ln2/2].
       n is rounded by adding and subtracting 1.5·2^23, which leaves it in the low bits of
       `shifted`; 2^n is built directly in the exponent bits; exp(r) is its Taylor series
       to r^7 (remainder < 5e-9 relative, under one float32 ulp; measured error ≤ 1e-7).
       Every operation maps to a SIMD instruction, unlike a call to expf. Below −87 the
       result is 0 (exp(−87) = 1.6e-38, the smallest normal float), so exp(−∞) = 0 exactly,
       which is how masked entries get weight 0. */
    static inline float mt_exp_f32(float x) {
        float clamped = x < -87.0f ? -87.0f : (x > 88.0f ? 88.0f : x);
        float shifted = clamped * 1.44269504088896341f + 12582912.0f;
        float n = shifted - 12582912.0f;
        int32_t bits;
        memcpy(&bits, &shifted, sizeof bits);
        int32_t exponent = (bits - 0x4B400000 + 127) << 23;
        float two_to_n;
        memcpy(&two_to_n, &exponent, sizeof two_to_n);
        float r = clamped - n * 0.693359375f + n * 2.12194440e-4f;  /* ln 2 in two parts */
        float p = 1.0f / 5040.0f;
        p = p * r + 1.0f / 720.0f;
        p = p * r + 1.0f / 120.0f;
        p = p * r + 1.0f / 24.0f;
        p = p * r + 1.0f / 6.0f;
        p = p * r + 0.5f;
        p = p * r + 1.0f;
        p = p * r + 1.0f;
        return x < -87.0f ? 0.0f : p * two_to_n;
    }

    /* The same in float64: round with 1.5·2^52, Taylor series to r^13 (remainder < 5e-18;
       measured error ≤ 2.3e-16), 0 below −708. */
    static inline double mt_exp_f64(double x) {
        double clamped = x < -708.0 ? -708.0 : (x > 709.0 ? 709.0 : x);
        double shifted = clamped * 1.4426950408889634074 + 6755399441055744.0;
        double n = shifted - 6755399441055744.0;
        int64_t bits;
        memcpy(&bits, &shifted, sizeof bits);
        int64_t exponent = (bits - 0x4338000000000000LL + 1023) << 52;
        double two_to_n;
        memcpy(&two_to_n, &exponent, sizeof two_to_n);
        double r = clamped - n * 0.693145751953125 - n * 1.42860682030941723212e-6;
        double p = 1.0 / 6227020800.0;
        p = p * r + 1.0 / 479001600.0;
        p = p * r + 1.0 / 39916800.0;
        p = p * r + 1.0 / 3628800.0;
        p = p * r + 1.0 / 362880.0;
        p = p * r + 1.0 / 40320.0;
        p = p * r + 1.0 / 5040.0;
        p = p * r + 1.0 / 720.0;
        p = p * r + 1.0 / 120.0;
        p = p * r + 1.0 / 24.0;
        p = p * r + 1.0 / 6.0;
        p = p * r + 0.5;
        p = p * r + 1.0;
        p = p * r + 1.0;
        return x < -708.0 ? 0.0 : p * two_to_n;
    }

    /* The row kernels, for `real` = float (suffix f32) and double (suffix f64):
         mt_mask_and_max   row += mask_row (skipped when NULL); returns max(row), −∞ when
                           every entry is masked
         mt_exp_sum        row[s] := exp(row[s] − shift); returns Σ row
         mt_dot            Σ x[s]·y[s]
         mt_sum            Σ x[s]                                                       */
    #define MT_ROW_KERNELS(real, sfx)                                                   \\
    MT_CLONES static real mt_mask_and_max_##sfx(real *row, const real *mask_row, int n) { \\
        real best = -INFINITY;                                                          \\
        if (mask_row == NULL) {                                                         \\
            _Pragma("omp simd reduction(max: best)")                                    \\
            for (int s = 0; s < n; s++) best = row[s] > best ? row[s] : best;           \\
        } else {                                                                        \\
            _Pragma("omp simd reduction(max: best)")                                    \\
            for (int s = 0; s < n; s++) {                                               \\
                row[s] += mask_row[s];                                                  \\
                best = row[s] > best ? row[s] : best;                                   \\
            }                                                                           \\
        }                                                                               \\
        return best;                                                                    \\
    }                                                                                   \\
    MT_CLONES static real mt_exp_sum_##sfx(real *row, int n, real shift) {              \\
        real total = 0;                                                                 \\
        _Pragma("omp simd reduction(+: total)")                                         \\
        for (int s = 0; s < n; s++) {                                                   \\
            row[s] = mt_exp_##sfx(row[s] - shift);                                      \\
            total += row[s];                                                            \\
        }                                                                               \\
        return total;                                                                   \\
    }                                                                                   \\
    MT_CLONES static real mt_dot_##sfx(const real *x, const real *y, int n) {           \\
        real total = 0;                                                                 \\
        _Pragma("omp simd reduction(+: total)")                                         \\
        for (int s = 0; s < n; s++) total += x[s] * y[s];                               \\
        return total;                                                                   \\
    }                                                                                   \\
    MT_CLONES static real mt_sum_##sfx(const real *x, int n) {                          \\
        real total = 0;                                                                 \\
        _Pragma("omp simd reduction(+: total)")                                         \\
        for (int s = 0; s < n; s++) total += x[s];                                      \\
        return total;                                                                   \\
    }

    MT_ROW_KERNELS(float, f32)
    MT_ROW_KERNELS(double, f64)

    #if defined(__GNUC__) && !defined(__clang__)
    #pragma GCC pop_options
    #endif
    """
    float mt_mask_and_max_f32(float *row, const float *mask_row, int n) nogil
    double mt_mask_and_max_f64(double *row, const double *mask_row, int n) nogil
    float mt_exp_sum_f32(float *row, int n, float shift) nogil
    double mt_exp_sum_f64(double *row, int n, double shift) nogil
    float mt_dot_f32(const float *x, const float *y, int n) nogil
    double mt_dot_f64(const double *x, const double *y, int n) nogil
    float mt_sum_f32(const float *x, int n) nogil
    double mt_sum_f64(const double *x, int n) nogil


# --- the same, for either float type ------------------------------------------------------

cdef inline floating mask_and_max(floating *row, const floating *mask_row, int n) noexcept nogil:
    """row += mask_row (0 allowed, −∞ masked; NULL: nothing masked); returns max(row)."""
    if floating is float:
        return mt_mask_and_max_f32(row, mask_row, n)
    else:
        return mt_mask_and_max_f64(row, mask_row, n)


cdef inline floating exp_sum(floating *row, int n, floating shift) noexcept nogil:
    """row[s] := exp(row[s] − shift), exactly 0 where row[s] = −∞; returns Σ row."""
    if floating is float:
        return mt_exp_sum_f32(row, n, shift)
    else:
        return mt_exp_sum_f64(row, n, shift)


cdef inline floating dot(const floating *x, const floating *y, int n) noexcept nogil:
    """Σ x[s]·y[s]."""
    if floating is float:
        return mt_dot_f32(x, y, n)
    else:
        return mt_dot_f64(x, y, n)


cdef inline floating row_sum(const floating *x, int n) noexcept nogil:
    """Σ x[s]."""
    if floating is float:
        return mt_sum_f32(x, n)
    else:
        return mt_sum_f64(x, n)


cdef inline floating exp_(floating x) noexcept nogil:
    """libm's exp, for a few scalars per row (exp(−∞) = 0 exactly)."""
    if floating is float:
        return expf(x)
    else:
        return exp(x)


cdef inline floating log_(floating x) noexcept nogil:
    if floating is float:
        return logf(x)
    else:
        return log(x)


cdef inline void scale_row(floating *row, int n, floating factor) noexcept nogil:
    """row := factor · row (a plain map: the compiler vectorizes it without help)."""
    cdef int s
    for s in range(n):
        row[s] *= factor
