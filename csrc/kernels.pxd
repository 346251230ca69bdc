"""The compiled C kernels (csrc/kernels.h), declared for the Cython modules, which cimport them.

kernels.h compiles one portable micro-kernel (csrc/microkernel.h) and the row kernels
(csrc/row_kernels.h) once per instruction-set path and keeps the chosen path's functions
in one table, mt_active. The `cdef inline` functions below pick the float or double entry
of that table for the fused type `floating`, so a kernel written once in Cython calls
the right C for its float type and for the CPU. Every module that cimports this file
gets its own copy of the C and of the table (all of it `static`): each module selects
its path when it loads, and minitransformer/_ext/__init__.py keeps them all on one.
"""

from cython cimport floating
from libc.math cimport exp, expf, log, logf
from libc.stdint cimport int64_t, uint8_t, uint32_t, uint64_t

cdef extern from "kernels.h" nogil:
    ctypedef struct mt_kernel_set:
        int isa
        int lanes_f32, tile_rows, tile_vectors
        void (*gemm_f32)(int, int, int, float, const float *, Py_ssize_t, Py_ssize_t,
                         const float *, Py_ssize_t, float, float *, Py_ssize_t) noexcept nogil
        void (*gemm_f64)(int, int, int, double, const double *, Py_ssize_t, Py_ssize_t,
                         const double *, Py_ssize_t, double, double *, Py_ssize_t) noexcept nogil
        void (*transpose_f32)(int, int, const float *, Py_ssize_t, float *, Py_ssize_t) noexcept nogil
        void (*transpose_f64)(int, int, const double *, Py_ssize_t, double *, Py_ssize_t) noexcept nogil
        float (*mask_and_max_f32)(float *, const float *, int) noexcept nogil
        double (*mask_and_max_f64)(double *, const double *, int) noexcept nogil
        float (*exp_sum_f32)(float *, int, float) noexcept nogil
        double (*exp_sum_f64)(double *, int, double) noexcept nogil
        float (*dot_f32)(const float *, const float *, int) noexcept nogil
        double (*dot_f64)(const double *, const double *, int) noexcept nogil
        float (*sum_f32)(const float *, int) noexcept nogil
        double (*sum_f64)(const double *, int) noexcept nogil
        void (*axpy_f32)(float *, const float *, float, int) noexcept nogil
        void (*axpy_f64)(double *, const double *, double, int) noexcept nogil
        void (*dropout_f32)(const float *, float *, uint8_t *, int64_t, int64_t, uint64_t,
                            uint32_t, float) noexcept nogil
        void (*dropout_f64)(const double *, double *, uint8_t *, int64_t, int64_t, uint64_t,
                            uint32_t, double) noexcept nogil
        void (*masked_scale_f32)(const float *, const uint8_t *, float *, int64_t, float) noexcept nogil
        void (*masked_scale_f64)(const double *, const uint8_t *, double *, int64_t, double) noexcept nogil
        float (*fma_steps)(long) noexcept nogil

    int MT_ISA_COUNT
    const char *mt_isa_names[]
    mt_kernel_set mt_active
    bint mt_isa_supported(int isa)
    int mt_isa_best()
    int mt_isa_select(int isa)


# --- the same, for either float type ------------------------------------------------------

cdef inline void gemm(bint trans_a, int m, int n, int k, floating alpha,
                      const floating *a, int lda, const floating *b, int ldb,
                      floating beta, floating *c, int ldc) noexcept nogil:
    """Row-major C (m, n) := alpha · op(A) (m, k) · B (k, n) + beta · C, op(A) = A or Aᵀ.

    B is read along its rows; a product with Bᵀ is done on a transposed copy (transpose).
    lda, ldb, ldc are row strides. With beta = 0, C is only written."""
    cdef Py_ssize_t a_rs = 1 if trans_a else lda
    cdef Py_ssize_t a_cs = lda if trans_a else 1
    if floating is float:
        mt_active.gemm_f32(m, n, k, alpha, a, a_rs, a_cs, b, ldb, beta, c, ldc)
    else:
        mt_active.gemm_f64(m, n, k, alpha, a, a_rs, a_cs, b, ldb, beta, c, ldc)


cdef inline void transpose(int rows, int cols, const floating *src, int lds,
                           floating *dst, int ldd) noexcept nogil:
    """dst (cols, rows) := src (rows, cols)ᵀ; lds and ldd are the row strides."""
    if floating is float:
        mt_active.transpose_f32(rows, cols, src, lds, dst, ldd)
    else:
        mt_active.transpose_f64(rows, cols, src, lds, dst, ldd)


cdef inline floating mask_and_max(floating *row, const floating *mask_row, int n) noexcept nogil:
    """row += mask_row (0 allowed, −∞ masked; NULL: nothing masked); returns max(row)."""
    if floating is float:
        return mt_active.mask_and_max_f32(row, mask_row, n)
    else:
        return mt_active.mask_and_max_f64(row, mask_row, n)


cdef inline floating exp_sum(floating *row, int n, floating shift) noexcept nogil:
    """row[s] := exp(row[s] − shift), exactly 0 where row[s] = −∞; returns Σ row."""
    if floating is float:
        return mt_active.exp_sum_f32(row, n, shift)
    else:
        return mt_active.exp_sum_f64(row, n, shift)


cdef inline floating dot(const floating *x, const floating *y, int n) noexcept nogil:
    """Σ x[s]·y[s]."""
    if floating is float:
        return mt_active.dot_f32(x, y, n)
    else:
        return mt_active.dot_f64(x, y, n)


cdef inline floating row_sum(const floating *x, int n) noexcept nogil:
    """Σ x[s]."""
    if floating is float:
        return mt_active.sum_f32(x, n)
    else:
        return mt_active.sum_f64(x, n)


cdef inline void axpy(floating *y, const floating *x, floating a, int n) noexcept nogil:
    """y += a·x (y and x must not overlap)."""
    if floating is float:
        mt_active.axpy_f32(y, x, a, n)
    else:
        mt_active.axpy_f64(y, x, a, n)


cdef inline void dropout(const floating *x, floating *y, uint8_t *keep, int64_t first, int64_t n,
                         uint64_t key, uint32_t threshold, floating scale) noexcept nogil:
    """Elements first … first + n − 1: keep := hash(key, index) ≥ threshold, y := x·scale or 0."""
    if floating is float:
        mt_active.dropout_f32(x, y, keep, first, n, key, threshold, scale)
    else:
        mt_active.dropout_f64(x, y, keep, first, n, key, threshold, scale)


cdef inline void masked_scale(const floating *dy, const uint8_t *keep, floating *dx, int64_t n,
                              floating scale) noexcept nogil:
    """dx := dy·scale where keep, else 0."""
    if floating is float:
        mt_active.masked_scale_f32(dy, keep, dx, n, scale)
    else:
        mt_active.masked_scale_f64(dy, keep, dx, n, scale)


cdef inline float fma_steps(long n) noexcept nogil:
    """n steps of 12 chains of float32 vector multiply-adds (the benchmarks' peak)."""
    return mt_active.fma_steps(n)


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
