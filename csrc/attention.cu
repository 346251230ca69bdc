// The fused masked-softmax kernels of the attention core on NVIDIA GPUs.
//
//     P = softmax(S · scale + M)            row by row, M = 0 where allowed and −∞ elsewhere
//     dS = scale · P ⊙ (dP − rowsum(dP ⊙ P))
//
// The four matrix products of attention (Q·Kᵀ, P·V, dO·Vᵀ and the three gradients) run in
// cuBLAS through cupy.matmul; these two kernels do the row-wise work between them, each in
// place, so a (B, H, T, S) array is read and written by one launch instead of the half-dozen
// elementwise passes and reductions of the NumPy reference (layers/attention.py).
//
// Size letters: B batch, H heads, T queries, S keys. A "row" is the S scores of one query,
// numbered row = (b·H + h)·T + t, which is its position in a C-contiguous (B, H, T, S) array.
//
// Launch (minitransformer/backends/cupy_backend.py):
//     grid  = (B·H·T,)                      one block per row
//     block = (threads,)                    a power of two from 32 to 256; thread i handles
//                                           keys i, i + threads, i + 2·threads, …
//     dynamic shared memory = threads · sizeof(Real) bytes, for the block reductions
//
// Template parameters:
//     Real     float or double: the element type of scores, weights and gradients. The
//              Python side asks NVRTC for masked_softmax_forward<float>,
//              masked_softmax_forward<double>, masked_softmax_backward<float> and
//              masked_softmax_backward<double> (RawModule's name_expressions).
// Macros: none. The source includes no header, since NVRTC compiles it without a system
// include path; expf / exp and the bit-cast intrinsics are built into device code.

// exp and −∞ in the precision of Real, so that float rows never round-trip through double.
template <typename Real>
struct RealOps;

template <>
struct RealOps<float> {
    __device__ static float exp(float x) { return expf(x); }
    __device__ static float negative_infinity() { return __int_as_float((int)0xff800000u); }
};

template <>
struct RealOps<double> {
    __device__ static double exp(double x) { return ::exp(x); }
    __device__ static double negative_infinity() { return __longlong_as_double((long long)0xfff0000000000000ULL); }
};

struct MaxOp {
    template <typename Real>
    __device__ Real operator()(Real a, Real b) const { return a > b ? a : b; }
};

struct SumOp {
    template <typename Real>
    __device__ Real operator()(Real a, Real b) const { return a + b; }
};

// Combine one value per thread into one value for the whole block, returned to every thread.
// A tree in shared memory: each round the lower half of the active threads folds in the
// upper half, so log2(blockDim.x) rounds; blockDim.x must be a power of two.
template <typename Real, typename Op>
__device__ Real block_reduce(Real value, Real* partial, Op combine) {
    const unsigned int thread = threadIdx.x;
    partial[thread] = value;
    __syncthreads();
    for (unsigned int half = blockDim.x / 2; half > 0; half /= 2) {
        if (thread < half) {
            partial[thread] = combine(partial[thread], partial[thread + half]);
        }
        __syncthreads();
    }
    const Real result = partial[0];
    // every thread must have read partial[0] before the next reduction overwrites it
    __syncthreads();
    return result;
}

// Forward: scores (B, H, T, S) holds Q·Kᵀ on entry and the attention weights P on exit.
//
// The mask is boolean and broadcast to (B, H, T, S) through its strides, counted in
// elements and 0 along a broadcast axis, so a padding mask (B, 1, 1, S) or a causal mask
// (1, 1, T, T) is read where it lies, never expanded. True means "may attend".
//
// pass 1  m = max over allowed keys of S·scale          (−∞ when no key is allowed)
// pass 2  w = exp(S·scale − m) on allowed keys, 0 elsewhere;  z = Σ w
// pass 3  P = w / z
// Subtracting m changes nothing mathematically and keeps exp from overflowing. A row with
// every key masked has m = −∞: its weights are all zero (never NaN, never uniform).
template <typename Real>
__global__ void masked_softmax_forward(
    Real* __restrict__ scores,
    const bool* __restrict__ mask,
    long long mask_stride_b, long long mask_stride_h, long long mask_stride_t, long long mask_stride_s,
    int n_heads, int n_queries, int n_keys, Real scale) {
    extern __shared__ unsigned char shared_bytes[];
    Real* partial = reinterpret_cast<Real*>(shared_bytes);  // (threads,)

    const long long row = blockIdx.x;
    const long long t = row % n_queries;
    const long long h = (row / n_queries) % n_heads;
    const long long b = row / ((long long)n_queries * n_heads);
    Real* row_scores = scores + row * n_keys;  // (S,)
    const bool* row_mask = mask + b * mask_stride_b + h * mask_stride_h + t * mask_stride_t;  // (S,), strided
    const Real negative_infinity = RealOps<Real>::negative_infinity();

    // pass 1: the largest allowed score of the row
    Real thread_max = negative_infinity;
    for (int s = threadIdx.x; s < n_keys; s += blockDim.x) {
        if (row_mask[s * mask_stride_s]) {
            const Real scaled = row_scores[s] * scale;
            thread_max = scaled > thread_max ? scaled : thread_max;
        }
    }
    const Real row_max = block_reduce(thread_max, partial, MaxOp());

    // a fully masked row; every thread sees the same row_max, so all of them return here
    if (row_max == negative_infinity) {
        for (int s = threadIdx.x; s < n_keys; s += blockDim.x) {
            row_scores[s] = Real(0);
        }
        return;
    }

    // pass 2: shifted exponentials, and their sum (at least 1: the maximum gives exp(0))
    Real thread_sum = Real(0);
    for (int s = threadIdx.x; s < n_keys; s += blockDim.x) {
        Real weight = Real(0);
        if (row_mask[s * mask_stride_s]) {
            weight = RealOps<Real>::exp(row_scores[s] * scale - row_max);
        }
        row_scores[s] = weight;
        thread_sum += weight;
    }
    const Real row_sum = block_reduce(thread_sum, partial, SumOp());

    // pass 3: normalize; each thread rescales the entries it wrote itself in pass 2
    for (int s = threadIdx.x; s < n_keys; s += blockDim.x) {
        row_scores[s] = row_scores[s] / row_sum;
    }
}

// Backward: dprobs (B, H, T, S) holds dP = dO·Vᵀ on entry and scale · dS on exit.
//
// The softmax Jacobian of one row is diag(p) − p·pᵀ; applied to dP it gives
//     dS = P ⊙ (dP − rowsum(dP ⊙ P)),
// so one block reduction per row replaces the S×S Jacobian. Masked keys have P = 0 and so
// get dS = 0: the mask needs no backward. The forward's scale is folded in here, because
// the scores were S·scale: then dQ = (scale·dS)·K and dK = (scale·dS)ᵀ·Q are plain products.
//
// pass 1  r = Σ_s dP ⊙ P
// pass 2  dS = scale · P ⊙ (dP − r)
template <typename Real>
__global__ void masked_softmax_backward(
    Real* __restrict__ dprobs, const Real* __restrict__ probs, int n_keys, Real scale) {
    extern __shared__ unsigned char shared_bytes[];
    Real* partial = reinterpret_cast<Real*>(shared_bytes);  // (threads,)

    const long long row = blockIdx.x;
    Real* row_dprobs = dprobs + row * n_keys;  // (S,)
    const Real* row_probs = probs + row * n_keys;  // (S,)

    // pass 1: the row's dot product of dP and P
    Real thread_dot = Real(0);
    for (int s = threadIdx.x; s < n_keys; s += blockDim.x) {
        thread_dot += row_dprobs[s] * row_probs[s];
    }
    const Real row_dot = block_reduce(thread_dot, partial, SumOp());

    // pass 2: the gradient of the scaled scores, written over dP
    for (int s = threadIdx.x; s < n_keys; s += blockDim.x) {
        row_dprobs[s] = scale * (row_probs[s] * (row_dprobs[s] - row_dot));
    }
}
