/* The matrix product of the attention kernels: one portable micro-kernel in plain C.

   C (m, n) := alpha · A' (m, k) · B (k, n) + beta · C, every matrix row-major, where
   A' is A or Aᵀ (given by its two strides) and B is read row by row, as stored.

   This file is the kernel for one float type and one instruction set. kernel_path.h
   includes it once per pair (kernels.h once per path), with these macros defined:

       MK_REAL    float or double
       MK_SFX     the suffix of every name: f32_avx2, f64_baseline, …
       MK_LANES   numbers per vector register (AVX2: 8 floats; AVX-512: 16; NEON, SSE2: 4)
       MK_MR      rows of a tile of C
       MK_NV      vectors in a row of a tile
       MK_TARGET  the attribute that lets the compiler use that instruction set here

   The method. C is cut into tiles of MK_MR rows × MK_NV vectors. One tile lives in
   MK_MR · MK_NV vector registers (the accumulators) for the whole sum over k, which is
   one rank-1 update per step p:

       tile[r, :] += A'[i + r, p] · B[p, j : j + MK_NV · MK_LANES]      r = 0 … MK_MR − 1

   a number of A' broadcast to every lane, times a row of B, added into a register: each
   vector of B loaded is used MK_MR times, each number of A' MK_NV times, and C is touched
   once, at the end, with alpha and beta. The tile is sized to the register file: the
   accumulators plus MK_NV vectors of B plus one broadcast must fit (AVX2 and SSE2 have
   16 registers: 6 × 2 accumulators; AVX-512 and NEON have 32: 6 × 4 and 8 × 3).

   Why no packing. A BLAS library copies ("packs") both operands into a layout of its own
   before every product, so that a panel of B stays in the L1 cache and A streams through
   it. That pays off for products of hundreds in every direction. Attention's products
   are thin: one side is the head width Dh = 64, at T = S = 32 all three sizes are tiny,
   and the whole panel of B that one column of tiles reads (k × MK_NV · MK_LANES numbers,
   64 × 64 floats = 16 KiB at most here) fits in L1 as it lies. Measured with OpenBLAS at
   32 × 32 × 64, the copies took as long as the arithmetic. Here the operands are used
   where they lie, through their strides, so Aᵀ costs nothing; a product with Bᵀ
   (scores = Q·Kᵀ) is done on a transposed copy that the kernels make once per head.

   What the compiler makes of it. The vector type is a GCC/Clang vector extension, so
   `acc[r][v] += a * b[v]` is one vector multiply-add (one FMA instruction where the
   instruction set has FMA: the compiler contracts the two operations, as C allows within
   an expression). mr and nv are constants wherever mk_tile is inlined (the switch in
   mk_gemm has one case per tile shape), so both loops over them unroll, and acc[r][v]
   becomes MK_MR · MK_NV named registers. With AVX2 the inner loop of a full 6 × 16 tile
   is 2 loads of B, 6 broadcasts and 12 vfmadd231ps, nothing else.

   Columns past the last whole vector (n not a multiple of MK_LANES) go through a plain
   loop (mk_edge), which the compiler vectorizes as it can: they are fewer than MK_LANES. */

#define MK_CAT_(a, b) a##_##b
#define MK_CAT(a, b) MK_CAT_(a, b)
#define MK_NAME(name) MK_CAT(name, MK_SFX)

typedef MK_REAL MK_NAME(mk_vec) __attribute__((vector_size(MK_LANES * sizeof(MK_REAL))));
#define MK_VEC MK_NAME(mk_vec)

/* One tile: C[0:mr, 0:nv·MK_LANES]. a points at A'[i, 0], so A'[i + r, p] is
   a[r·a_rs + p·a_cs]; b points at B[0, j]; c at C[i, j]. Loads and stores go through
   memcpy, the portable unaligned access, which compiles to one vector move. */
MK_TARGET __attribute__((always_inline)) static inline void
MK_NAME(mk_tile)(const int mr, const int nv, int k, MK_REAL alpha, const MK_REAL *a,
                 ptrdiff_t a_rs, ptrdiff_t a_cs, const MK_REAL *b, ptrdiff_t ldb, MK_REAL beta,
                 MK_REAL *c, ptrdiff_t ldc) {
    MK_VEC acc[MK_MR][MK_NV];
    for (int r = 0; r < mr; ++r)
        for (int v = 0; v < nv; ++v)
            acc[r][v] = (MK_VEC) {0};
    for (int p = 0; p < k; ++p) {
        MK_VEC b_row[MK_NV];  /* row p of B, the part under this tile */
        for (int v = 0; v < nv; ++v)
            memcpy(&b_row[v], b + p * ldb + v * MK_LANES, sizeof(MK_VEC));
        for (int r = 0; r < mr; ++r) {
            MK_REAL a_rp = a[r * a_rs + p * a_cs];  /* broadcast to every lane */
            for (int v = 0; v < nv; ++v)
                acc[r][v] += a_rp * b_row[v];
        }
    }
    /* C := alpha · tile + beta · C; with beta = 0, C is not read (it may be uninitialized) */
    for (int r = 0; r < mr; ++r)
        for (int v = 0; v < nv; ++v) {
            MK_REAL *c_vec = c + r * ldc + v * MK_LANES;
            MK_VEC result = alpha * acc[r][v];
            if (beta != 0) {
                MK_VEC old;
                memcpy(&old, c_vec, sizeof old);
                result += beta * old;
            }
            memcpy(c_vec, &result, sizeof result);
        }
}

/* The columns past the last whole vector: width < MK_LANES of them, every row. */
MK_TARGET static void
MK_NAME(mk_edge)(int m, int width, int k, MK_REAL alpha, const MK_REAL *a, ptrdiff_t a_rs,
                 ptrdiff_t a_cs, const MK_REAL *b, ptrdiff_t ldb, MK_REAL beta, MK_REAL *c,
                 ptrdiff_t ldc) {
    for (int i = 0; i < m; ++i) {
        MK_REAL acc[MK_LANES] = {0};
        for (int p = 0; p < k; ++p) {
            MK_REAL a_ip = a[i * a_rs + p * a_cs];
            for (int j = 0; j < width; ++j)
                acc[j] += a_ip * b[p * ldb + j];
        }
        for (int j = 0; j < width; ++j)
            c[i * ldc + j] = beta != 0 ? alpha * acc[j] + beta * c[i * ldc + j] : alpha * acc[j];
    }
}

/* C (m, n) := alpha · A' (m, k) · B (k, n) + beta · C; A'[i, p] = a[i·a_rs + p·a_cs]
   (a_rs = lda, a_cs = 1 for A; a_rs = 1, a_cs = lda for Aᵀ), B rows ldb apart, C rows
   ldc apart. A column of tiles at a time, and in it every row of tiles, so the panel of
   B under that column is read from cache after the first tile. */
MK_TARGET static void
MK_NAME(mk_gemm)(int m, int n, int k, MK_REAL alpha, const MK_REAL *a, ptrdiff_t a_rs,
                 ptrdiff_t a_cs, const MK_REAL *b, ptrdiff_t ldb, MK_REAL beta, MK_REAL *c,
                 ptrdiff_t ldc) {
    int vector_cols = n - n % MK_LANES;  /* the columns that whole vectors cover */
    for (int j = 0; j < vector_cols; j += MK_NV * MK_LANES) {
        int nv = (vector_cols - j) / MK_LANES < MK_NV ? (vector_cols - j) / MK_LANES : MK_NV;
        for (int i = 0; i < m; i += MK_MR) {
            int mr = m - i < MK_MR ? m - i : MK_MR;
            const MK_REAL *a_tile = a + i * a_rs;
            MK_REAL *c_tile = c + i * ldc + j;
            /* one case per tile shape, each its own unrolled copy of mk_tile */
#define MK_CASE(rows, vectors)                                                           \
            case (rows) * 8 + (vectors):                                                 \
                MK_NAME(mk_tile)(rows, vectors, k, alpha, a_tile, a_rs, a_cs, b + j, ldb, \
                                 beta, c_tile, ldc);                                     \
                break;
#if MK_NV == 2
#define MK_ROW_CASES(rows) MK_CASE(rows, 1) MK_CASE(rows, 2)
#elif MK_NV == 3
#define MK_ROW_CASES(rows) MK_CASE(rows, 1) MK_CASE(rows, 2) MK_CASE(rows, 3)
#else
#define MK_ROW_CASES(rows) MK_CASE(rows, 1) MK_CASE(rows, 2) MK_CASE(rows, 3) MK_CASE(rows, 4)
#endif
            switch (mr * 8 + nv) {
                MK_ROW_CASES(1) MK_ROW_CASES(2) MK_ROW_CASES(3) MK_ROW_CASES(4)
#if MK_MR > 4
                MK_ROW_CASES(5) MK_ROW_CASES(6)
#endif
#if MK_MR > 6
                MK_ROW_CASES(7) MK_ROW_CASES(8)
#endif
            }
#undef MK_ROW_CASES
#undef MK_CASE
        }
    }
    if (vector_cols < n)
        MK_NAME(mk_edge)(m, n - vector_cols, k, alpha, a, a_rs, a_cs, b + vector_cols, ldb,
                         beta, c + vector_cols, ldc);
}

/* dst (cols, rows) := src (rows, cols)ᵀ; rows lds apart in src, ldd apart in dst.

   In square blocks of 128 bits a side (4 × 4 floats, 2 × 2 doubles): a block's rows are
   loaded as four (two) vectors and transposed in registers by two rounds of two-source
   shuffles, which interleave first single numbers and then pairs of them:

       rows  a0 a1 a2 a3     round 1  a0 b0 a1 b1     round 2  a0 b0 c0 d0   = column 0
             b0 b1 b2 b3              a2 b2 a3 b3              a1 b1 c1 d1   = column 1
             c0 c1 c2 c3              c0 d0 c1 d1              a2 b2 c2 d2   = column 2
             d0 d1 d2 d3              c2 d2 c3 d3              a3 b3 c3 d3   = column 3

   and stored as four (two) rows of dst, a band of dst's rows at a time, left to right:
   measured 1.7× (512 × 64 floats) to 4× (32 × 64) faster than moving one number at a
   time. The edges that do not fill a block, and compilers without __builtin_shufflevector
   (GCC before 12), move one number at a time. */
#if defined(__has_builtin)
#if __has_builtin(__builtin_shufflevector)
#define MK_SHUFFLE 1
#endif
#endif
MK_TARGET static void
MK_NAME(mk_transpose)(int rows, int cols, const MK_REAL *src, ptrdiff_t lds, MK_REAL *dst,
                      ptrdiff_t ldd) {
    int full_rows = 0, full_cols = 0;
#ifdef MK_SHUFFLE
    typedef MK_REAL quad __attribute__((vector_size(16)));
    enum { side = 16 / sizeof(MK_REAL) };
    full_rows = rows - rows % side;
    full_cols = cols - cols % side;
    for (int j = 0; j < full_cols; j += side)  /* a band of dst's rows, written left to right */
        for (int i = 0; i < full_rows; i += side) {
            quad row[side], column[side];
            for (int r = 0; r < side; ++r)
                memcpy(&row[r], src + (i + r) * lds + j, sizeof(quad));
#if MK_ELEMENT_BYTES == 4
            quad ab_low = __builtin_shufflevector(row[0], row[1], 0, 4, 1, 5);
            quad ab_high = __builtin_shufflevector(row[0], row[1], 2, 6, 3, 7);
            quad cd_low = __builtin_shufflevector(row[2], row[3], 0, 4, 1, 5);
            quad cd_high = __builtin_shufflevector(row[2], row[3], 2, 6, 3, 7);
            column[0] = __builtin_shufflevector(ab_low, cd_low, 0, 1, 4, 5);
            column[1] = __builtin_shufflevector(ab_low, cd_low, 2, 3, 6, 7);
            column[2] = __builtin_shufflevector(ab_high, cd_high, 0, 1, 4, 5);
            column[3] = __builtin_shufflevector(ab_high, cd_high, 2, 3, 6, 7);
#else
            column[0] = __builtin_shufflevector(row[0], row[1], 0, 2);
            column[1] = __builtin_shufflevector(row[0], row[1], 1, 3);
#endif
            for (int c = 0; c < side; ++c)
                memcpy(dst + (j + c) * ldd + i, &column[c], sizeof(quad));
        }
#endif
    /* the right edge of the blocked rows, then the bottom rows */
    for (int i = 0; i < rows; ++i)
        for (int j = i < full_rows ? full_cols : 0; j < cols; ++j)
            dst[j * ldd + i] = src[i * lds + j];
}

/* The machine's peak for this instruction set, for the benchmarks: n steps of 12
   independent chains of multiply-adds in vector registers (12 chains hide the latency of
   two FMA units), no memory traffic. 12 · MK_LANES · 2 floating-point operations a step.
   The result only keeps the compiler from dropping the loop. */
MK_TARGET __attribute__((unused)) static MK_REAL MK_NAME(mk_fma_steps)(long n) {
    MK_VEC chain[12], x = (MK_VEC) {0} + (MK_REAL) 0.999999, y = (MK_VEC) {0} + (MK_REAL) 1e-6;
    for (int i = 0; i < 12; ++i)
        chain[i] = (MK_VEC) {0} + (MK_REAL) (i + 1);
    for (long step = 0; step < n; ++step)
        for (int i = 0; i < 12; ++i)
            chain[i] = chain[i] * x + y;
    MK_REAL total = 0;
    for (int i = 0; i < 12; ++i)
        for (int lane = 0; lane < MK_LANES; ++lane)
            total += chain[i][lane];
    return total;
}

#undef MK_VEC
#undef MK_NAME
#undef MK_CAT
#undef MK_CAT_
