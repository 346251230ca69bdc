/* The compiled kernels' C, for every instruction set, and the one run-time dispatch.

   microkernel.h (the matrix product) and row_kernels.h (softmax rows, sums, dropout) are
   written once, in portable C. This file compiles each of them once per float type and
   per instruction-set path, with a function attribute that lets the compiler use that
   path's instructions in that copy alone, and keeps a table of the copies:

       path       where          vector       tile of C (float32)   compiled with
       baseline   every CPU      128 bits     6 × 8                 the build's own flags
       avx2       x86-64-v3      256 bits     6 × 16                target("avx2,fma")
       avx512     x86-64-v4      512 bits     6 × 64                target("avx512f,…")
       neon       aarch64        128 bits     8 × 12                (NEON is aarch64's base)

   The best path the CPU runs is chosen when a module loads (mt_isa_best); the variable
   MINITRANSFORMER_ISA=baseline|avx2|avx512|neon forces one (checked in Python, where the
   error can say why), and the tests run every path the CPU supports. Nothing here needs
   -march: the build stays portable, and only the dispatch looks at the CPU.

   The kernels call the chosen copies through mt_active, one table of function pointers:
   an indirect call per product or per row, a few nanoseconds against microseconds of work. */

#ifndef MT_KERNELS_H
#define MT_KERNELS_H

#include <math.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#if (defined(__GNUC__) || defined(__clang__)) && defined(__x86_64__)
#define MT_X86 1
#else
#define MT_X86 0
#endif
#if defined(__aarch64__)
#define MT_ARM64 1
#else
#define MT_ARM64 0
#endif

/* GCC keeps the compares in exp's clamp as branches unless it may assume that a compare
   raises no floating-point exception flag (nobody here reads them); then the row loops
   vectorize. Clang assumes it already. */
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC push_options
#pragma GCC optimize("no-trapping-math")
#endif

/* ---- exp for the row loops -------------------------------------------------------------

   exp(x) = 2^n · exp(r), with n = round(x / ln 2) and r = x − n·ln 2 in [−ln2/2, ln2/2].
   n is rounded by adding and subtracting 1.5·2^23, which leaves it in the low bits of
   `shifted`; 2^n is built directly in the exponent bits; exp(r) is its Taylor series to
   r^7 (remainder < 5e-9 relative, under one float32 ulp; measured error ≤ 1e-7). Every
   operation maps to a SIMD instruction, unlike a call to expf. Below −87 the result is 0
   (exp(−87) = 1.6e-38, the smallest normal float), so exp(−∞) = 0 exactly, which is how
   masked entries get weight 0. */
__attribute__((always_inline)) static inline float mt_exp_f32(float x) {
    float clamped = x < -87.0f ? -87.0f : (x > 88.0f ? 88.0f : x);
    float shifted = clamped * 1.44269504088896341f + 12582912.0f;
    float n = shifted - 12582912.0f;
    int32_t bits;
    memcpy(&bits, &shifted, sizeof bits);
    int32_t exponent = (bits - 0x4B400000 + 127) * (1 << 23);
    float two_to_n;
    memcpy(&two_to_n, &exponent, sizeof two_to_n);
    float r = clamped - n * 0.693359375f + n * 2.12194440e-4f; /* ln 2 in two parts */
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
__attribute__((always_inline)) static inline double mt_exp_f64(double x) {
    double clamped = x < -708.0 ? -708.0 : (x > 709.0 ? 709.0 : x);
    double shifted = clamped * 1.4426950408889634074 + 6755399441055744.0;
    double n = shifted - 6755399441055744.0;
    int64_t bits;
    memcpy(&bits, &shifted, sizeof bits);
    int64_t exponent = (bits - 0x4338000000000000LL + 1023) * ((int64_t) 1 << 52);
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

/* ---- the dropout generator (its NumPy twin is minitransformer/layers/dropout.py) --------

   Counter-based: the bits of element `index` of one dropout call are a hash of the index
   and the call's 64-bit key, so any thread can draw any element, in any order, and get
   what the NumPy reference gets. lowbias32 (a 32-bit integer hash with two multiplies) is
   applied twice, with one half of the key mixed in before each round. The top 24 bits are
   compared with a threshold: the unit is kept when bits ≥ round(p · 2^24). */
__attribute__((always_inline)) static inline uint32_t mt_lowbias32(uint32_t x) {
    x ^= x >> 16;
    x *= 0x21f0aaadu;
    x ^= x >> 15;
    x *= 0x735a2d97u;
    x ^= x >> 15;
    return x;
}

__attribute__((always_inline)) static inline uint32_t mt_dropout_bits(uint32_t index, uint32_t key_lo,
                                                                      uint32_t key_hi) {
    return mt_lowbias32(mt_lowbias32(index ^ key_lo) ^ key_hi) >> 8;
}

/* ---- one copy of each kernel per path (kernel_path.h: float and double) ----------------- */

/* baseline: no attribute, the build's own flags (x86-64: SSE2; aarch64: NEON) */
#define MK_PATH baseline
#define MK_TARGET
#define MK_BYTES 16
#define MK_MR 6
#define MK_NV 2
#include "kernel_path.h"

#if MT_X86
/* avx2: x86-64-v3's vector units (AVX2 and FMA), 16 registers of 256 bits */
#define MK_PATH avx2
#define MK_TARGET __attribute__((target("avx2,fma")))
#define MK_BYTES 32
#define MK_MR 6
#define MK_NV 2
#include "kernel_path.h"

/* avx512: x86-64-v4's (AVX-512 F, VL, BW, DQ), 32 registers of 512 bits */
#define MK_PATH avx512
#define MK_TARGET __attribute__((target("avx512f,avx512vl,avx512bw,avx512dq,avx2,fma")))
#define MK_BYTES 64
#define MK_MR 6
#define MK_NV 4
#include "kernel_path.h"
#endif /* MT_X86 */

#if MT_ARM64
/* neon: aarch64's Advanced SIMD, 32 registers of 128 bits, so a taller and wider tile */
#define MK_PATH neon
#define MK_TARGET
#define MK_BYTES 16
#define MK_MR 8
#define MK_NV 3
#include "kernel_path.h"
#endif /* MT_ARM64 */

#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC pop_options
#endif

/* ---- OpenMP's threads (1 where the build has no OpenMP) --------------------------------- */

#ifdef _OPENMP
#include <omp.h>
static inline int mt_max_threads(void) { return omp_get_max_threads(); }
static inline void mt_set_max_threads(int n) { omp_set_num_threads(n); }
#else
static inline int mt_max_threads(void) { return 1; }
static inline void mt_set_max_threads(int n) { (void) n; }
#endif

/* ---- the table, and the choice ---------------------------------------------------------- */

enum { MT_ISA_BASELINE = 0, MT_ISA_AVX2 = 1, MT_ISA_AVX512 = 2, MT_ISA_NEON = 3, MT_ISA_COUNT = 4 };
static const char *const mt_isa_names[MT_ISA_COUNT] = {"baseline", "avx2", "avx512", "neon"};

typedef struct {
    int isa;
    int lanes_f32, tile_rows, tile_vectors;  /* the float32 tile: rows × vectors of lanes */
    void (*gemm_f32)(int, int, int, float, const float *, ptrdiff_t, ptrdiff_t, const float *,
                     ptrdiff_t, float, float *, ptrdiff_t);
    void (*gemm_f64)(int, int, int, double, const double *, ptrdiff_t, ptrdiff_t, const double *,
                     ptrdiff_t, double, double *, ptrdiff_t);
    void (*transpose_f32)(int, int, const float *, ptrdiff_t, float *, ptrdiff_t);
    void (*transpose_f64)(int, int, const double *, ptrdiff_t, double *, ptrdiff_t);
    float (*mask_and_max_f32)(float *, const float *, int);
    double (*mask_and_max_f64)(double *, const double *, int);
    float (*exp_sum_f32)(float *, int, float);
    double (*exp_sum_f64)(double *, int, double);
    float (*dot_f32)(const float *, const float *, int);
    double (*dot_f64)(const double *, const double *, int);
    float (*sum_f32)(const float *, int);
    double (*sum_f64)(const double *, int);
    void (*axpy_f32)(float *, const float *, float, int);
    void (*axpy_f64)(double *, const double *, double, int);
    void (*dropout_f32)(const float *, float *, uint8_t *, int64_t, int64_t, uint64_t, uint32_t, float);
    void (*dropout_f64)(const double *, double *, uint8_t *, int64_t, int64_t, uint64_t, uint32_t, double);
    void (*masked_scale_f32)(const float *, const uint8_t *, float *, int64_t, float);
    void (*masked_scale_f64)(const double *, const uint8_t *, double *, int64_t, double);
    float (*fma_steps)(long);
} mt_kernel_set;

#define MT_KERNEL_SET(isa, path, lanes, rows, vectors)                                       \
    {isa, lanes, rows, vectors, mk_gemm_f32_##path, mk_gemm_f64_##path,                       \
     mk_transpose_f32_##path, mk_transpose_f64_##path, mk_mask_and_max_f32_##path,            \
     mk_mask_and_max_f64_##path, mk_exp_sum_f32_##path, mk_exp_sum_f64_##path,                \
     mk_dot_f32_##path, mk_dot_f64_##path, mk_sum_f32_##path, mk_sum_f64_##path,              \
     mk_axpy_f32_##path, mk_axpy_f64_##path,                                                   \
     mk_dropout_f32_##path, mk_dropout_f64_##path, mk_masked_scale_f32_##path,                \
     mk_masked_scale_f64_##path, mk_fma_steps_f32_##path}

static const mt_kernel_set mt_kernel_sets[MT_ISA_COUNT] = {
    MT_KERNEL_SET(MT_ISA_BASELINE, baseline, 4, 6, 2),
#if MT_X86
    MT_KERNEL_SET(MT_ISA_AVX2, avx2, 8, 6, 2),
    MT_KERNEL_SET(MT_ISA_AVX512, avx512, 16, 6, 4),
#else
    {.isa = -1}, {.isa = -1},
#endif
#if MT_ARM64
    MT_KERNEL_SET(MT_ISA_NEON, neon, 4, 8, 3),
#else
    {.isa = -1},
#endif
};

/* 1 when this build has the path and this CPU (and its operating system) runs it. */
static int mt_isa_supported(int isa) {
    if (isa < 0 || isa >= MT_ISA_COUNT || mt_kernel_sets[isa].isa != isa)
        return 0;
#if MT_X86
    __builtin_cpu_init();
    if (isa == MT_ISA_AVX2)
        return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
    if (isa == MT_ISA_AVX512)
        return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512vl") &&
               __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512dq");
#endif
    return 1;
}

/* The fastest path this CPU runs. */
static int mt_isa_best(void) {
    static const int by_preference[] = {MT_ISA_AVX512, MT_ISA_AVX2, MT_ISA_NEON, MT_ISA_BASELINE};
    for (int i = 0; i < 4; ++i)
        if (mt_isa_supported(by_preference[i]))
            return by_preference[i];
    return MT_ISA_BASELINE;
}

/* The kernels in use. A module sets them once when it loads (mt_isa_select(mt_isa_best())
   or the path MINITRANSFORMER_ISA names), before any kernel runs; tests switch paths
   between calls, never during one. */
static mt_kernel_set mt_active = MT_KERNEL_SET(MT_ISA_BASELINE, baseline, 4, 6, 2);

/* Use path `isa` from now on; 0 on success, −1 (nothing changed) where it cannot run. */
static int mt_isa_select(int isa) {
    if (!mt_isa_supported(isa))
        return -1;
    mt_active = mt_kernel_sets[isa];
    return 0;
}

#endif /* MT_KERNELS_H */
