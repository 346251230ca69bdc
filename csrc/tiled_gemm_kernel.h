/* One float type's tiled product; included by tiled_gemm.h once per type, with MT_REAL,
   MT_SFX, MT_LANES, MT_VEC, MT_MASK and the intrinsics' names defined (the explanation of
   the method is there). This file undefines them at its end. */

#define MT_CAT_(a, b) a##_##b
#define MT_CAT(a, b) MT_CAT_(a, b)
#define MT_NAME(name) MT_CAT(name, MT_SFX)

/* One tile: C[0:mr, 0:nv·MT_LANES] (lanes past `last` of the last vector masked off).
   mr and nv are constants wherever this is inlined, so both loops over them unroll and
   acc[r][v] become named registers. a points at A'[i, 0]; A'[i + r, p] is
   a[r·a_rs + p·a_cs]. b points at B[0, j]. */
__attribute__((target("avx512f"), always_inline)) static inline void
MT_NAME(mt_tile)(const int mr, const int nv, int k, MT_REAL alpha, const MT_REAL *a,
                 ptrdiff_t a_rs, ptrdiff_t a_cs, const MT_REAL *b, ptrdiff_t ldb,
                 MT_MASK last, MT_REAL beta, MT_REAL *c, ptrdiff_t ldc) {
    MT_VEC acc[MT_MR][MT_NV];
    for (int r = 0; r < mr; ++r)
        for (int v = 0; v < nv; ++v)
            acc[r][v] = MT_SETZERO();
    for (int p = 0; p < k; ++p) {
        /* row p of B, the part under this tile */
        const MT_REAL *b_row = b + p * ldb;
        MT_VEC b_vec[MT_NV];
        for (int v = 0; v < nv; ++v)
            b_vec[v] = v == nv - 1 ? MT_MASKZ_LOAD(last, b_row + v * MT_LANES)
                                   : MT_LOAD(b_row + v * MT_LANES);
        /* column p of A', one number per row of the tile, broadcast to every lane */
        for (int r = 0; r < mr; ++r) {
            MT_VEC a_rp = MT_SET1(a[r * a_rs + p * a_cs]);
            for (int v = 0; v < nv; ++v)
                acc[r][v] = MT_FMADD(a_rp, b_vec[v], acc[r][v]);
        }
    }
    /* C := alpha · tile + beta · C; with beta = 0, C is not read (it may be uninitialized) */
    MT_VEC alpha_vec = MT_SET1(alpha), beta_vec = MT_SET1(beta);
    for (int r = 0; r < mr; ++r)
        for (int v = 0; v < nv; ++v) {
            MT_MASK lanes = v == nv - 1 ? last : (MT_MASK) -1;
            MT_REAL *c_vec = c + r * ldc + v * MT_LANES;
            MT_VEC result = MT_MUL(alpha_vec, acc[r][v]);
            if (beta != 0)
                result = MT_FMADD(beta_vec, MT_MASKZ_LOAD(lanes, c_vec), result);
            MT_MASK_STORE(c_vec, lanes, result);
        }
}

/* C (m, n) := alpha · A' (m, k) · B (k, n) + beta · C, A'[i, p] = a[i·a_rs + p·a_cs]
   (a_rs = lda, a_cs = 1 for A; a_rs = 1, a_cs = lda for Aᵀ), B rows ldb apart, C rows
   ldc apart. Columns are taken a panel of MT_NV vectors at a time, and within a panel
   every tile of rows, so that the panel of B (k × 64 floats) is reused from cache. */
__attribute__((target("avx512f"))) static void
MT_NAME(mt_gemm)(int m, int n, int k, MT_REAL alpha, const MT_REAL *a, ptrdiff_t a_rs,
                 ptrdiff_t a_cs, const MT_REAL *b, ptrdiff_t ldb, MT_REAL beta, MT_REAL *c,
                 ptrdiff_t ldc) {
    for (int j = 0; j < n; j += MT_NV * MT_LANES) {
        int cols = n - j < MT_NV * MT_LANES ? n - j : MT_NV * MT_LANES;
        int nv = (cols + MT_LANES - 1) / MT_LANES;
        int tail = cols - (nv - 1) * MT_LANES;  /* 1 … MT_LANES lanes used in the last vector */
        MT_MASK last = (MT_MASK) (((unsigned) 1 << tail) - 1);
        for (int i = 0; i < m; i += MT_MR) {
            int mr = m - i < MT_MR ? m - i : MT_MR;
            const MT_REAL *a_tile = a + i * a_rs;
            MT_REAL *c_tile = c + i * ldc + j;
            /* one case per tile shape, each a separate unrolled copy of mt_tile */
#define MT_TILE_CASE(rows, vectors)                                                   \
            case (rows) * 8 + (vectors):                                              \
                MT_NAME(mt_tile)(rows, vectors, k, alpha, a_tile, a_rs, a_cs, b + j,  \
                                 ldb, last, beta, c_tile, ldc);                       \
                break;
#define MT_TILE_ROWS(rows) \
            MT_TILE_CASE(rows, 1) MT_TILE_CASE(rows, 2) MT_TILE_CASE(rows, 3) MT_TILE_CASE(rows, 4)
            switch (mr * 8 + nv) {
                MT_TILE_ROWS(1) MT_TILE_ROWS(2) MT_TILE_ROWS(3)
                MT_TILE_ROWS(4) MT_TILE_ROWS(5) MT_TILE_ROWS(6)
            }
#undef MT_TILE_ROWS
#undef MT_TILE_CASE
        }
    }
}

/* dst (cols, rows) := src (rows, cols)ᵀ; rows lds apart in src, ldd apart in dst.

   Square blocks of MT_LANES × MT_LANES go through registers: a transpose swaps the bits
   of the row index with those of the column index, and one round of two-source permutes
   swaps one bit, between rows x and y = x + d (d = 1, 2, 4, …):

       x'[l] = x[l]      if l & d == 0,  else y[l − d]
       y'[l] = x[l + d]  if l & d == 0,  else y[l]

   log2(MT_LANES) rounds of MT_LANES permutes move a whole block; measured, this is 4×
   faster than copying number by number. The edges that do not fill a block are copied
   number by number. */
__attribute__((target("avx512f"))) static void
MT_NAME(mt_transpose)(int rows, int cols, const MT_REAL *src, ptrdiff_t lds, MT_REAL *dst,
                      ptrdiff_t ldd) {
    int full_rows = rows - rows % MT_LANES, full_cols = cols - cols % MT_LANES;
    for (int j = 0; j < full_cols; j += MT_LANES)
        for (int i = 0; i < full_rows; i += MT_LANES) {
            MT_VEC row[MT_LANES];
#pragma GCC unroll 16
            for (int x = 0; x < MT_LANES; ++x)
                row[x] = MT_LOAD(src + (i + x) * lds + j);
#pragma GCC unroll 4
            for (int d = 1; d < MT_LANES; d *= 2) {
                MT_INDEX from_x[MT_LANES], from_y[MT_LANES];  /* index ≥ MT_LANES: from y */
                for (int l = 0; l < MT_LANES; ++l) {
                    from_x[l] = (l & d) ? MT_LANES + l - d : l;
                    from_y[l] = (l & d) ? MT_LANES + l : l + d;
                }
                __m512i index_x = _mm512_loadu_si512(from_x), index_y = _mm512_loadu_si512(from_y);
#pragma GCC unroll 16
                for (int x = 0; x < MT_LANES; ++x)
                    if (!(x & d)) {
                        MT_VEC old_x = row[x], old_y = row[x + d];
                        row[x] = MT_PERMUTE2(old_x, index_x, old_y);
                        row[x + d] = MT_PERMUTE2(old_x, index_y, old_y);
                    }
            }
#pragma GCC unroll 16
            for (int x = 0; x < MT_LANES; ++x)
                _mm512_storeu_si512(dst + (j + x) * ldd + i, MT_AS_INT(row[x]));
        }
    /* the right and bottom edges */
    for (int i = 0; i < rows; ++i)
        for (int j = i < full_rows ? full_cols : 0; j < cols; ++j)
            dst[j * ldd + i] = src[i * lds + j];
}

#undef MT_NAME
#undef MT_CAT
#undef MT_CAT_
#undef MT_REAL
#undef MT_SFX
#undef MT_LANES
#undef MT_VEC
#undef MT_MASK
#undef MT_SETZERO
#undef MT_SET1
#undef MT_FMADD
#undef MT_MUL
#undef MT_LOAD
#undef MT_MASKZ_LOAD
#undef MT_MASK_STORE
#undef MT_INDEX
#undef MT_PERMUTE2
#undef MT_AS_INT
