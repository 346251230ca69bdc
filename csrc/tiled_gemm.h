/* Tiled matrix products for the attention kernels, in AVX-512 registers.

   C (m, n) := alpha · A' (m, k) · B (k, n) + beta · C, every matrix row-major, where
   A' is A or Aᵀ (given by its two strides) and B is read row by row, as stored.

   Why not BLAS for these? The products of attention are thin: one side is the head width
   Dh = 64, and at T = S = 32 all three sizes are tiny. A BLAS library copies ("packs")
   both operands into its own layout before every product and zeroes C first when
   beta = 0; at 32×32×64 that bookkeeping took as long as the arithmetic (perf: the
   copy routines were 30–40 % of the attention kernels' time). And the OpenBLAS that
   NumPy and SciPy ship picks its AVX2 kernels on this machine's CPU, whose AVX-512
   units do twice the work per cycle (measured: 262 against 132 GFLOP/s on one core,
   float32 fused multiply-adds). Here the operands are used where they lie.

   How one product is computed: C is cut into tiles of MT_MR rows × MT_NV vectors
   (6 × 64 floats, 6 × 32 doubles). A tile lives in 24 vector registers for the whole
   sum over k, which is a rank-1 update per step p:

       tile[r, :] += A'[i + r, p] · B[p, j : j + width]      for r = 0 … MT_MR − 1

   one broadcast number from A' times a row of B, added into a register: each value of
   B loaded is used MT_MR times, each value of A' MT_NV times, and C is touched once, at
   the end, with alpha and beta. The last vector of a row of tiles is loaded and stored
   through a lane mask, so n needs no padding; fewer than MT_MR rows at the bottom get a
   tile with fewer rows. Each tile shape is its own fully unrolled code, with every
   register named at compile time: the switch in mt_gemm_* picks it.

   B is read along its rows. A product with Bᵀ (scores = Q·Kᵀ) is done on a transposed
   copy, made once per head by mt_transpose_* (64 × S numbers, against 64 · T · S
   multiply-adds that use it).

   These functions exist only where GCC or Clang can compile AVX-512 code for x86-64;
   mt_tiled_gemm_supported() tells at run time whether this CPU runs it.
   csrc/attention.pyx falls back to BLAS when it does not. */

#ifndef MT_TILED_GEMM_H
#define MT_TILED_GEMM_H

#include <stddef.h>
#include <stdint.h>

#if (defined(__GNUC__) || defined(__clang__)) && defined(__x86_64__)
#define MT_TILED_GEMM 1
#include <immintrin.h>
#else
#define MT_TILED_GEMM 0
#endif

#if MT_TILED_GEMM

#define MT_MR 6  /* rows of a tile */
#define MT_NV 4  /* vectors of a tile's row: 64 floats or 32 doubles */

static int mt_tiled_gemm_supported(void) {
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx512f");
}

/* float32: 16 lanes */
#define MT_REAL float
#define MT_SFX f32
#define MT_LANES 16
#define MT_VEC __m512
#define MT_MASK __mmask16
#define MT_SETZERO _mm512_setzero_ps
#define MT_SET1 _mm512_set1_ps
#define MT_FMADD _mm512_fmadd_ps
#define MT_MUL _mm512_mul_ps
#define MT_LOAD _mm512_loadu_ps
#define MT_MASKZ_LOAD _mm512_maskz_loadu_ps
#define MT_MASK_STORE _mm512_mask_storeu_ps
#define MT_INDEX int32_t
#define MT_PERMUTE2 _mm512_permutex2var_ps
#define MT_AS_INT _mm512_castps_si512
#include "tiled_gemm_kernel.h"

/* float64: 8 lanes */
#define MT_REAL double
#define MT_SFX f64
#define MT_LANES 8
#define MT_VEC __m512d
#define MT_MASK __mmask8
#define MT_SETZERO _mm512_setzero_pd
#define MT_SET1 _mm512_set1_pd
#define MT_FMADD _mm512_fmadd_pd
#define MT_MUL _mm512_mul_pd
#define MT_LOAD _mm512_loadu_pd
#define MT_MASKZ_LOAD _mm512_maskz_loadu_pd
#define MT_MASK_STORE _mm512_mask_storeu_pd
#define MT_INDEX int64_t
#define MT_PERMUTE2 _mm512_permutex2var_pd
#define MT_AS_INT _mm512_castpd_si512
#include "tiled_gemm_kernel.h"

/* The machine's peak, for the benchmarks: n steps of 12 independent chains of float32
   multiply-adds in AVX-512 registers (12 chains hide the latency of 2 FMA units), no
   memory traffic at all. 12 · 16 · 2 = 384 floating-point operations per step. The
   result only keeps the compiler from dropping the loop. */
__attribute__((target("avx512f"))) static float mt_fma_steps(long n) {
    __m512 a0 = _mm512_set1_ps(0.f), a1 = _mm512_set1_ps(1.f), a2 = _mm512_set1_ps(2.f),
           a3 = _mm512_set1_ps(3.f), a4 = _mm512_set1_ps(4.f), a5 = _mm512_set1_ps(5.f),
           a6 = _mm512_set1_ps(6.f), a7 = _mm512_set1_ps(7.f), a8 = _mm512_set1_ps(8.f),
           a9 = _mm512_set1_ps(9.f), a10 = _mm512_set1_ps(10.f), a11 = _mm512_set1_ps(11.f);
    __m512 x = _mm512_set1_ps(0.999999f), y = _mm512_set1_ps(1e-6f);
    for (long i = 0; i < n; ++i) {
        a0 = _mm512_fmadd_ps(a0, x, y); a1 = _mm512_fmadd_ps(a1, x, y);
        a2 = _mm512_fmadd_ps(a2, x, y); a3 = _mm512_fmadd_ps(a3, x, y);
        a4 = _mm512_fmadd_ps(a4, x, y); a5 = _mm512_fmadd_ps(a5, x, y);
        a6 = _mm512_fmadd_ps(a6, x, y); a7 = _mm512_fmadd_ps(a7, x, y);
        a8 = _mm512_fmadd_ps(a8, x, y); a9 = _mm512_fmadd_ps(a9, x, y);
        a10 = _mm512_fmadd_ps(a10, x, y); a11 = _mm512_fmadd_ps(a11, x, y);
    }
    __m512 sum = _mm512_add_ps(_mm512_add_ps(_mm512_add_ps(a0, a1), _mm512_add_ps(a2, a3)),
                               _mm512_add_ps(_mm512_add_ps(a4, a5), _mm512_add_ps(a6, a7)));
    sum = _mm512_add_ps(sum, _mm512_add_ps(_mm512_add_ps(a8, a9), _mm512_add_ps(a10, a11)));
    return _mm512_reduce_add_ps(sum);
}

#else  /* no AVX-512 code here: the kernels use BLAS */

/* Never called, since mt_tiled_gemm_supported() says 0; declared so that callers compile. */
#include <stdlib.h>
static int mt_tiled_gemm_supported(void) { return 0; }
#define MT_UNREACHABLE(name, real)                                                         \
    static void mt_gemm_##name(int m, int n, int k, real alpha, const real *a,             \
                               ptrdiff_t a_rs, ptrdiff_t a_cs, const real *b,              \
                               ptrdiff_t ldb, real beta, real *c, ptrdiff_t ldc) {         \
        (void) m; (void) n; (void) k; (void) alpha; (void) a; (void) a_rs; (void) a_cs;    \
        (void) b; (void) ldb; (void) beta; (void) c; (void) ldc;                           \
        abort();                                                                           \
    }                                                                                      \
    static void mt_transpose_##name(int rows, int cols, const real *src, ptrdiff_t lds,    \
                                    real *dst, ptrdiff_t ldd) {                            \
        (void) rows; (void) cols; (void) src; (void) lds; (void) dst; (void) ldd;          \
        abort();                                                                           \
    }
MT_UNREACHABLE(f32, float)
MT_UNREACHABLE(f64, double)
#undef MT_UNREACHABLE
static float mt_fma_steps(long n) { (void) n; abort(); }

#endif
#endif
