"""Nyströmformer: attention through m landmarks and an iterative pseudo-inverse (Xiong et al., 2021).

The landmarks are segment means: split the real (non-padded) positions into m contiguous
segments and average the queries and the keys of each, Q̃ = L_q·Q and K̃ = L_k·K with
L (m, length) an averaging matrix. Then three small softmaxes stand in for the (T, S) one:

    F̃ = softmax(Q·K̃ᵀ/√Dh)        (T, m)
    Ã = softmax(Q̃·K̃ᵀ/√Dh)        (m, m)
    B̃ = softmax(Q̃·Kᵀ/√Dh)        (m, S), padded keys masked
    Nyström(Q, K, V) = F̃ · Ã⁺ · (B̃·V)      O((T + S)·m·Dh + m³)

the Nyström approximation of a kernel matrix from m of its columns and rows (here:
"columns" of mean keys). Ã⁺, the Moore–Penrose pseudo-inverse, is computed by the
iteration the paper uses (a high-order Newton–Schulz step, which converges to Ã⁺ from
Z₀ = Ãᵀ/(‖Ã‖₁·‖Ã‖∞)):

    Z_{j+1} = ¼·Z_j·(13·I − ÃZ_j·(15·I − ÃZ_j·(7·I − ÃZ_j)))

It uses only matrix products, so its backward is the chain rule through the unrolled
iterations (below), with every Z_j kept: m² numbers per iteration.

Limit: with m = S landmarks (no padding) Q̃ = Q, K̃ = K and F̃ = Ã = B̃ = P, so the output
is P·P⁺·P·V = P·V, exact attention, once the iteration has converged.

When a sequence has fewer real positions n than landmarks, segments overlap (segment j
covers positions ⌊j·n/m⌋ … ⌈(j+1)·n/m⌉ − 1), so every landmark is a real mean; more
landmarks than key positions S is an error.

Backward, with dO (every softmax as in layers/attention.py):
    out = F̃·W, W = Z·C, C = B̃·V:  dF̃ = dO·Wᵀ, dW = F̃ᵀ·dO, dZ = dW·Cᵀ, dC = Zᵀ·dW,
                                   dB̃ = dC·Vᵀ, dV = B̃ᵀ·dC
    one iteration, X = ÃZ, U = 7I − X, Y = 15I − X·U, R = 13I − X·Y, Z' = ¼·Z·R:
        dZ = ¼·dZ'·Rᵀ, dR = ¼·Zᵀ·dZ',  dX = −dR·Yᵀ, dY = −Xᵀ·dR,
        dX −= dY·Uᵀ, dU = −Xᵀ·dY,  dX −= dU,  dÃ += dX·Zᵀ, dZ += Ãᵀ·dX
    Z₀ = α·Ãᵀ, α = 1/(c·r) with c = max column sum and r = max row sum:
        dÃ += α·dZ₀ᵀ; dα = Σ dZ₀ ⊙ Ãᵀ; c and r pass −α·dα/c, −α·dα/r to their column and row
    then the three softmax backwards give dQ, dK, dQ̃, dK̃, and dQ += L_qᵀ·dQ̃, dK += L_kᵀ·dK̃.
"""

import math

import numpy as np

from .common import masked_softmax, positive_int, softmax_backward

ITERATIONS = 6  # the paper's default


def segment_means_matrix(n_landmarks, valid):
    """valid (B, L) bool, real positions first -> L (B, 1, m, L): row j averages segment j
    of the real positions (overlapping segments when there are fewer than m of them)."""
    batch, length = valid.shape
    averaging = np.zeros((batch, 1, n_landmarks, length))
    for b in range(batch):
        positions = np.flatnonzero(valid[b])
        n = len(positions)
        if n == 0:
            continue  # no real position: zero landmarks, and B̃ masks every key
        for j in range(n_landmarks):
            lo = (j * n) // n_landmarks
            hi = max(-(-((j + 1) * n) // n_landmarks), lo + 1)
            averaging[b, 0, j, positions[lo:hi]] = 1.0 / (hi - lo)
    return averaging


def pinv_forward(a, iterations=ITERATIONS):
    """a (B, H, m, m) -> Z ≈ a⁺ (B, H, m, m), cache of every iterate."""
    col_sum = a.sum(axis=-2).max(axis=-1)  # (B, H): ‖Ã‖₁ for Ã ≥ 0
    row_sum = a.sum(axis=-1).max(axis=-1)  # (B, H): ‖Ã‖∞
    alpha = 1.0 / (col_sum * row_sum)  # (B, H)
    eye = np.eye(a.shape[-1], dtype=a.dtype)
    z = alpha[..., None, None] * a.swapaxes(-1, -2)  # (B, H, m, m)
    iterates = [z]
    for _ in range(iterations):
        x = a @ z
        z = 0.25 * z @ (13 * eye - x @ (15 * eye - x @ (7 * eye - x)))
        iterates.append(z)
    return z, (a, alpha, iterates)


def pinv_backward(dz, cache):
    """dZ (B, H, m, m) -> dÃ (B, H, m, m), through the unrolled iterations."""
    a, alpha, iterates = cache
    eye = np.eye(a.shape[-1], dtype=a.dtype)
    da = np.zeros_like(a)
    for z in reversed(iterates[:-1]):
        # in the forward pass this was: z' = ¼·z·(13I − x·(15I − x·(7I − x))), x = a·z
        x = a @ z
        u = 7 * eye - x
        y = 15 * eye - x @ u
        r = 13 * eye - x @ y
        dr = 0.25 * z.swapaxes(-1, -2) @ dz
        dz_next = 0.25 * dz @ r.swapaxes(-1, -2)
        dx = -dr @ y.swapaxes(-1, -2)
        dy = -x.swapaxes(-1, -2) @ dr
        dx -= dy @ u.swapaxes(-1, -2)
        du = -x.swapaxes(-1, -2) @ dy
        dx -= du
        da += dx @ z.swapaxes(-1, -2)
        dz = dz_next + a.swapaxes(-1, -2) @ dx
    # in the forward pass this was: z₀ = α·aᵀ, α = 1/(max column sum · max row sum)
    da += alpha[..., None, None] * dz.swapaxes(-1, -2)
    dalpha = (dz * a.swapaxes(-1, -2)).sum(axis=(-2, -1))  # (B, H)
    col, row = a.sum(axis=-2), a.sum(axis=-1)  # (B, H, m)
    col_max, row_max = col.max(axis=-1), row.max(axis=-1)  # (B, H)
    dcol = -alpha * dalpha / col_max  # (B, H)
    drow = -alpha * dalpha / row_max
    # the derivative of a max goes to its argmax column (row) only
    col_pick = np.eye(a.shape[-1])[col.argmax(axis=-1)]  # (B, H, m)
    row_pick = np.eye(a.shape[-1])[row.argmax(axis=-1)]  # (B, H, m)
    da += (dcol[..., None] * col_pick)[..., None, :]  # every row of the chosen column
    da += (drow[..., None] * row_pick)[..., :, None]  # every column of the chosen row
    return da


def nystrom_forward(q, k, v, n_landmarks, key_mask=None, iterations=ITERATIONS):
    """q (B, H, T, Dh), k, v (B, H, S, Dh), key_mask ~(B, H, 1, S) -> out (B, H, T, Dh), cache.

    The queries' segments use the key mask too when T = S (self-attention), else all T."""
    batch, heads, tgt_len, head_dim = q.shape
    src_len = k.shape[2]
    n_landmarks = positive_int("nystrom landmarks", n_landmarks)
    if n_landmarks > src_len:
        raise ValueError(f"nystrom landmarks must be at most the number of keys S={src_len}, got {n_landmarks}")
    positive_int("nystrom iterations", iterations)
    scale = 1.0 / math.sqrt(head_dim)
    valid_k = np.ones((batch, src_len), bool) if key_mask is None else np.broadcast_to(key_mask[:, 0, 0, :], (batch, src_len))
    valid_q = valid_k if tgt_len == src_len else np.ones((batch, tgt_len), bool)
    avg_k = segment_means_matrix(n_landmarks, valid_k).astype(q.dtype)  # (B, 1, m, S)
    avg_q = segment_means_matrix(n_landmarks, valid_q).astype(q.dtype)  # (B, 1, m, T)
    # pass 1: the landmarks
    q_land = avg_q @ q  # (B, H, m, Dh)
    k_land = avg_k @ k  # (B, H, m, Dh)
    # pass 2: the three softmaxes
    kernel_1 = masked_softmax((q @ k_land.swapaxes(-1, -2)) * scale, None)  # (B, H, T, m)
    kernel_2 = masked_softmax((q_land @ k_land.swapaxes(-1, -2)) * scale, None)  # (B, H, m, m)
    kernel_3 = masked_softmax((q_land @ k.swapaxes(-1, -2)) * scale, key_mask)  # (B, H, m, S)
    # pass 3: the pseudo-inverse of the middle one
    z, cache_pinv = pinv_forward(kernel_2, iterations)  # (B, H, m, m)
    # pass 4: F̃·(Z·(B̃·V)), right to left so nothing of size T·S appears
    context = kernel_3 @ v  # (B, H, m, Dh)
    mixed = z @ context  # (B, H, m, Dh)
    out = kernel_1 @ mixed  # (B, H, T, Dh)
    cache = (q, k, v, avg_q, avg_k, q_land, k_land, kernel_1, kernel_2, kernel_3, z, cache_pinv, context, mixed)
    return out, cache


def nystrom_backward(dout, cache):
    """dout (B, H, T, Dh) -> dq (B, H, T, Dh), dk, dv (B, H, S, Dh)."""
    q, k, v, avg_q, avg_k, q_land, k_land, kernel_1, kernel_2, kernel_3, z, cache_pinv, context, mixed = cache
    scale = 1.0 / math.sqrt(q.shape[-1])
    # pass 4: out = kernel_1 @ (z @ (kernel_3 @ v))
    dkernel_1 = dout @ mixed.swapaxes(-1, -2)  # (B, H, T, m)
    dmixed = kernel_1.swapaxes(-1, -2) @ dout  # (B, H, m, Dh)
    dz = dmixed @ context.swapaxes(-1, -2)  # (B, H, m, m)
    dcontext = z.swapaxes(-1, -2) @ dmixed  # (B, H, m, Dh)
    dkernel_3 = dcontext @ v.swapaxes(-1, -2)  # (B, H, m, S)
    dv = kernel_3.swapaxes(-1, -2) @ dcontext  # (B, H, S, Dh)
    # pass 3: through the unrolled pseudo-inverse
    dkernel_2 = pinv_backward(dz, cache_pinv)  # (B, H, m, m)
    # pass 2: the three softmaxes and their scores
    dscores_1 = softmax_backward(dkernel_1, kernel_1)  # (B, H, T, m)
    dscores_2 = softmax_backward(dkernel_2, kernel_2)  # (B, H, m, m)
    dscores_3 = softmax_backward(dkernel_3, kernel_3)  # (B, H, m, S)
    dq = (dscores_1 @ k_land) * scale  # (B, H, T, Dh)
    dk_land = (dscores_1.swapaxes(-1, -2) @ q + dscores_2.swapaxes(-1, -2) @ q_land) * scale  # (B, H, m, Dh)
    dq_land = (dscores_2 @ k_land + dscores_3 @ k) * scale  # (B, H, m, Dh)
    dk = (dscores_3.swapaxes(-1, -2) @ q_land) * scale  # (B, H, S, Dh)
    # pass 1: the landmarks were averages
    dq = dq + avg_q.swapaxes(-1, -2) @ dq_land
    dk = dk + avg_k.swapaxes(-1, -2) @ dk_land
    return dq, dk, dv


def nystrom_weights(cache):
    """The weights the output implies, F̃·Z·B̃ (B, H, T, S): out = (F̃·Z·B̃)·V."""
    kernel_1, kernel_3, z = cache[7], cache[9], cache[10]
    return kernel_1 @ z @ kernel_3
