/* The compiled kernels of csrc/kernels.h against plain C, on every path this CPU runs.

   Built and run by tests/test_kernels_c.py: natively, and cross-compiled for aarch64 and
   run under qemu-aarch64 where those tools exist, so the NEON path is proven on any
   machine. For each path and float type:
     * the product C := alpha·A'·B + beta·C on random shapes (every tile shape, partial
       tiles in both directions, edge columns, k = 0 and 1, A and Aᵀ, beta 0 and not);
     * the transpose;
     * the row kernels (mask + max, exp + sum, dot, sum) against libm, with masked rows;
     * the dropout kernel against the generator's definition, from any starting index.
   Prints one line per path and "N passed, N failed"; exits non-zero on a failure. */

#include <stdio.h>
#include <stdlib.h>

#include "kernels.h"

static unsigned long long rng_state = 0x243F6A8885A308D3ull;

static double uniform(void) { /* in [−1, 1) */
    rng_state = rng_state * 6364136223846793005ull + 1442695040888963407ull;
    return (double) (rng_state >> 11) / 9007199254740992.0 * 2.0 - 1.0;
}

static int irand(int n) { return (int) ((uniform() + 1.0) / 2.0 * n) % n; }

static int passed = 0, failed = 0;

static void check(int ok, const char *path, const char *what, double err, double bound) {
    if (ok) {
        passed++;
    } else {
        failed++;
        printf("NOT OK %s: %s (error %.3g, bound %.3g)\n", path, what, err, bound);
    }
}

/* C := alpha·A'·B + beta·C, summed in double (for float64 the same precision as the kernel,
   whose bound below allows for both roundings) */
#define REFERENCE_GEMM(real, sfx)                                                               \
    static void reference_gemm_##sfx(int m, int n, int k, real alpha, const real *a, ptrdiff_t a_rs, \
                                     ptrdiff_t a_cs, const real *b, ptrdiff_t ldb, real beta,   \
                                     real *c, ptrdiff_t ldc) {                                  \
        for (int i = 0; i < m; ++i)                                                             \
            for (int j = 0; j < n; ++j) {                                                       \
                double total = 0;                                                          \
                for (int p = 0; p < k; ++p)                                                     \
                    total += (double) a[i * a_rs + p * a_cs] * b[p * ldb + j];             \
                c[i * ldc + j] = (real) (alpha * total + (beta != 0 ? beta * c[i * ldc + j] : 0)); \
            }                                                                                   \
    }
REFERENCE_GEMM(float, f32)
REFERENCE_GEMM(double, f64)

#define CHECK_TYPE(real, sfx, eps)                                                              \
    static void check_##sfx(const mt_kernel_set *set, const char *path) {                       \
        char what[160];                                                                         \
        /* products: every shape up to two tiles in each direction, plus larger ones */         \
        for (int trial = 0; trial < 240; ++trial) {                                             \
            int m = trial < 200 ? 1 + irand(2 * 8 + 1) : 1 + irand(70);                        \
            int n = trial < 200 ? 1 + irand(2 * 64 + 5) : 1 + irand(150);                       \
            int k = trial % 37 == 0 ? 0 : (trial % 41 == 0 ? 1 : 1 + irand(90));                \
            int trans = trial % 2, with_beta = (trial / 2) % 2;                                 \
            int lda = (trans ? m : k) + irand(3), ldb = n + irand(3), ldc = n + irand(3);       \
            real *a = malloc(sizeof(real) * (size_t) lda * (trans ? k : m) + sizeof(real));     \
            real *b = malloc(sizeof(real) * (size_t) ldb * (k ? k : 1));                        \
            real *c = malloc(sizeof(real) * (size_t) ldc * m);                                  \
            real *expect = malloc(sizeof(real) * (size_t) ldc * m);                             \
            for (int i = 0; i < lda * (trans ? k : m); ++i) a[i] = (real) uniform();            \
            for (int i = 0; i < ldb * k; ++i) b[i] = (real) uniform();                          \
            for (int i = 0; i < ldc * m; ++i) c[i] = expect[i] = (real) uniform();              \
            real alpha = (real) (0.5 + uniform()), beta = with_beta ? (real) uniform() : 0;     \
            ptrdiff_t a_rs = trans ? 1 : lda, a_cs = trans ? lda : 1;                           \
            set->gemm_##sfx(m, n, k, alpha, a, a_rs, a_cs, b, ldb, beta, c, ldc);               \
            reference_gemm_##sfx(m, n, k, alpha, a, a_rs, a_cs, b, ldb, beta, expect, ldc);     \
            double worst = 0;                                                                   \
            for (int i = 0; i < m; ++i)                                                         \
                for (int j = 0; j < ldc; ++j) {                                                 \
                    double err = fabs((double) c[i * ldc + j] - (double) expect[i * ldc + j]);  \
                    worst = err > worst ? err : worst; /* j ≥ n: must be untouched (err 0) */   \
                }                                                                               \
            double bound = (k + 2) * 4 * eps;                                                   \
            snprintf(what, sizeof what, "gemm m=%d n=%d k=%d %s beta=%s", m, n, k,              \
                     trans ? "A^T" : "A", with_beta ? "yes" : "0");                             \
            check(worst <= bound, path, what, worst, bound);                                    \
            free(a); free(b); free(c); free(expect);                                            \
        }                                                                                       \
        /* transpose */                                                                         \
        for (int trial = 0; trial < 40; ++trial) {                                              \
            int rows = 1 + irand(70), cols = 1 + irand(70), lds = cols + irand(3), ldd = rows + irand(3); \
            real *src = malloc(sizeof(real) * (size_t) rows * lds);                             \
            real *dst = calloc((size_t) cols * ldd, sizeof(real));                              \
            for (int i = 0; i < rows * lds; ++i) src[i] = (real) uniform();                     \
            set->transpose_##sfx(rows, cols, src, lds, dst, ldd);                               \
            int same = 1;                                                                       \
            for (int i = 0; i < rows; ++i)                                                      \
                for (int j = 0; j < cols; ++j) same &= dst[j * ldd + i] == src[i * lds + j];    \
            snprintf(what, sizeof what, "transpose %d x %d", rows, cols);                       \
            check(same, path, what, same ? 0 : 1, 0);                                           \
            free(src); free(dst);                                                               \
        }                                                                                       \
        /* row kernels, with masked entries and fully masked rows */                            \
        for (int trial = 0; trial < 60; ++trial) {                                              \
            int n = 1 + irand(150), all_masked = trial % 10 == 0;                               \
            real row[160], mask[160], x[160], y[160], copy[160];                                \
            real expect_max = -INFINITY;                                                        \
            for (int s = 0; s < n; ++s) {                                                       \
                row[s] = (real) (8 * uniform());                                                \
                mask[s] = all_masked || uniform() < -0.4 ? (real) -INFINITY : 0;                \
                x[s] = (real) uniform();                                                        \
                y[s] = (real) uniform();                                                        \
                real masked = row[s] + mask[s];                                                 \
                expect_max = masked > expect_max ? masked : expect_max;                         \
            }                                                                                   \
            real best = set->mask_and_max_##sfx(row, mask, n);                                  \
            snprintf(what, sizeof what, "mask_and_max n=%d", n);                                \
            check(best == expect_max, path, what, best == expect_max ? 0 : 1, 0);               \
            if (best != -INFINITY) {                                                            \
                memcpy(copy, row, sizeof(real) * n);                                            \
                real total = set->exp_sum_##sfx(row, n, best);                                  \
                double expect_total = 0, worst = 0;                                             \
                for (int s = 0; s < n; ++s) {                                                   \
                    double truth = exp((double) copy[s] - (double) best);                       \
                    expect_total += truth;                                                      \
                    double err = fabs(row[s] - truth) / (truth > 1e-30 ? truth : 1);           \
                    worst = err > worst ? err : worst;                                          \
                }                                                                               \
                snprintf(what, sizeof what, "exp n=%d", n);                                     \
                check(worst <= 8 * eps, path, what, worst, 8 * eps);                            \
                double err = fabs(total - expect_total) / expect_total;                         \
                snprintf(what, sizeof what, "exp_sum n=%d", n);                                 \
                check(err <= (n + 8) * eps, path, what, err, (n + 8) * eps);                    \
            }                                                                                   \
            double dot_truth = 0, sum_truth = 0;                                                \
            for (int s = 0; s < n; ++s) { dot_truth += (double) x[s] * y[s]; sum_truth += x[s]; } \
            double dot_err = fabs(set->dot_##sfx(x, y, n) - dot_truth);                         \
            real axpy_y[160];                                                                   \
            memcpy(axpy_y, y, sizeof(real) * n);                                                \
            set->axpy_##sfx(axpy_y, x, (real) 0.75, n);                                         \
            int axpy_ok = 1;                                                                    \
            for (int s = 0; s < n; ++s)                                                         \
                axpy_ok &= fabs(axpy_y[s] - (y[s] + 0.75 * x[s])) <= 4 * eps;                   \
            check(axpy_ok, path, "axpy", axpy_ok ? 0 : 1, 4 * eps);                             \
            double sum_err = fabs(set->sum_##sfx(x, n) - sum_truth);                            \
            snprintf(what, sizeof what, "dot/sum n=%d", n);                                     \
            check(dot_err <= n * 2 * eps && sum_err <= n * 2 * eps, path, what,                 \
                  dot_err > sum_err ? dot_err : sum_err, n * 2 * eps);                          \
        }                                                                                       \
        /* dropout: the generator's definition, from any first index */                         \
        for (int trial = 0; trial < 20; ++trial) {                                              \
            int n = 1 + irand(300);                                                             \
            int64_t first = irand(1000);                                                        \
            uint64_t key = rng_state;                                                           \
            uint32_t threshold = (uint32_t) ((uniform() + 1) / 2 * (1 << 24));                  \
            real x[300], y[300], dy[300], dx[300];                                              \
            uint8_t keep[300];                                                                  \
            for (int s = 0; s < n; ++s) { x[s] = (real) uniform(); dy[s] = (real) uniform(); }  \
            set->dropout_##sfx(x, y, keep, first, n, key, threshold, (real) 1.25);              \
            set->masked_scale_##sfx(dy, keep, dx, n, (real) 1.25);                              \
            int same = 1;                                                                       \
            for (int s = 0; s < n; ++s) {                                                       \
                int kept = mt_dropout_bits((uint32_t) (first + s), (uint32_t) key,              \
                                           (uint32_t) (key >> 32)) >= threshold;                \
                same &= keep[s] == kept && y[s] == (kept ? x[s] * (real) 1.25 : 0)              \
                        && dx[s] == (kept ? dy[s] * (real) 1.25 : 0);                           \
            }                                                                                   \
            snprintf(what, sizeof what, "dropout n=%d first=%lld", n, (long long) first);      \
            check(same, path, what, same ? 0 : 1, 0);                                           \
        }                                                                                       \
    }
CHECK_TYPE(float, f32, 1.2e-7)
CHECK_TYPE(double, f64, 2.3e-16)

int main(void) {
    int paths = 0;
    for (int isa = 0; isa < MT_ISA_COUNT; ++isa) {
        if (!mt_isa_supported(isa))
            continue;
        int before = failed;
        check_f32(&mt_kernel_sets[isa], mt_isa_names[isa]);
        check_f64(&mt_kernel_sets[isa], mt_isa_names[isa]);
        printf("%s %s\n", failed == before ? "OK" : "NOT OK", mt_isa_names[isa]);
        paths++;
    }
    printf("paths: %d\n", paths);
    printf("%d passed, %d failed\n", passed, failed);
    return failed ? 1 : 0;
}
