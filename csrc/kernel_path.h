/* One instruction-set path: the micro-kernel (microkernel.h) and the row kernels
   (row_kernels.h), each for float and for double. kernels.h includes this file once per
   path, with these defined (it undefines them at its end):

       MK_PATH    the path's name, the last part of every function's name (avx2, …)
       MK_TARGET  the attribute that lets the compiler use the path's instructions
       MK_BYTES   the width of a vector register in bytes (16, 32 or 64)
       MK_MR      rows of a tile of C
       MK_NV      vectors in a row of a tile                                          */

#define MK_PASTE_(a, b) a##_##b
#define MK_PASTE(a, b) MK_PASTE_(a, b)

#define MK_REAL float
#define MK_ELEMENT_BYTES 4
#define MK_SFX MK_PASTE(f32, MK_PATH)
#define MK_LANES (MK_BYTES / 4)
#define MK_EXP mt_exp_f32
#include "microkernel.h"
#include "row_kernels.h"
#undef MK_REAL
#undef MK_ELEMENT_BYTES
#undef MK_SFX
#undef MK_LANES
#undef MK_EXP

#define MK_REAL double
#define MK_ELEMENT_BYTES 8
#define MK_SFX MK_PASTE(f64, MK_PATH)
#define MK_LANES (MK_BYTES / 8)
#define MK_EXP mt_exp_f64
#include "microkernel.h"
#include "row_kernels.h"
#undef MK_REAL
#undef MK_ELEMENT_BYTES
#undef MK_SFX
#undef MK_LANES
#undef MK_EXP

#undef MK_PASTE
#undef MK_PASTE_
#undef MK_PATH
#undef MK_TARGET
#undef MK_BYTES
#undef MK_MR
#undef MK_NV
