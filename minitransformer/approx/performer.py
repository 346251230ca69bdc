"""Performer (FAVOR+): softmax attention through positive orthogonal random features
(Choromanski et al., 2021).

The softmax kernel is an expectation over random directions ω ~ N(0, I):

    exp(q·k) = E_ω[ exp(ω·q − |q|²/2) · exp(ω·k − |k|²/2) ]

so with m directions ω_1 … ω_m (the rows of Ω, (m, Dh)) and the positive features

    φ(x) = exp(Ω·x − |x|²/2 − c) / √m          (m,), with x = q/Dh^¼ or k/Dh^¼

exp(q·k/√Dh) ≈ e^{c_q + c_k}·φ(q)·φ(k), and attention becomes

    out_t = φ(q_t)ᵀ·Σ_s φ(k_s)·v_sᵀ / φ(q_t)ᵀ·Σ_s φ(k_s)       bidirectional
    out_t = φ(q_t)ᵀ·Σ_{s≤t} φ(k_s)·v_sᵀ / φ(q_t)ᵀ·Σ_{s≤t} φ(k_s)  causal (prefix sums)

at cost O((T + S)·m·Dh): the (T, S) matrix is never formed. "Positive": every feature is
an exponential, so the estimated weights are positive and the denominator cannot change
sign (the sin/cos features of Rahimi and Recht can, and then the ratio explodes).
"Orthogonal": the rows of Ω are drawn orthogonal in blocks of Dh (Gram–Schmidt through a
QR decomposition), each rescaled to the length of a Gaussian vector, so each is still
marginally N(0, I) but they cover the directions more evenly: a lower variance.

The stabilizer c: exp(Ω·x) overflows for long vectors, so each query row subtracts its own
largest Ω·x, and the keys subtract one largest value over all keys of a (b, h). Both cancel
exactly between numerator and denominator, so they are constants for the gradient (the
backward is exact, not an approximation). Padded keys get φ = 0; a row whose keys are all
padded (or a denominator of 0) gives output 0.

The numerator and the denominator are unbiased estimates; their ratio is not (it is
consistent: the error falls like 1/√m, tests/test_approx.py).

Backward, with N = numerator, D = denominator, out = N/D and dO:
    dN = dO / D,   dD = −rowsum(dO ⊙ out) / D
    bidirectional:  with KV = φ(K)ᵀ·V (m, Dh), z = φ(K)ᵀ·1 (m,)
        dφ(Q) = dN·KVᵀ + dD·zᵀ,  dKV = φ(Q)ᵀ·dN,  dz = φ(Q)ᵀ·dD
        dφ(K) = V·dKVᵀ + 1·dzᵀ,  dV = φ(K)·dKV
    causal: the same sums, but dφ(Q)_t needs the prefix sums KV_{≤t}, z_{≤t} (a forward
        sweep), and dφ(K)_s, dV_s need the suffix sums G_s = Σ_{t≥s} φ(q_t)·dN_tᵀ and
        g_s = Σ_{t≥s} dD_t·φ(q_t) (a reverse sweep): dφ(k_s) = G_s·v_s + g_s,
        dv_s = G_sᵀ·φ(k_s). Both sweeps go chunk by chunk: inside a chunk of C positions
        a (C, C) lower-triangular product, across chunks the running (m, Dh) state, so
        memory is O(T·m + C² + m·Dh), never (T, T).
    the features: φ = exp(Ω·x − |x|²/2 − c)/√m gives
        dx = ((dφ ⊙ φ)·Ω − rowsum(dφ ⊙ φ)·x) / Dh^¼
"""

import math

import numpy as np

from .common import positive_int

# positions per chunk of the causal prefix and suffix sums
CHUNK = 64


def orthogonal_features(n_features, head_dim, rng):
    """Ω (m, Dh): blocks of Dh orthogonal directions, each row with the length of a
    standard Gaussian vector in Dh dimensions (so each row is marginally N(0, I))."""
    n_features = positive_int("performer features m", n_features)
    blocks = []
    for _ in range(-(-n_features // head_dim)):
        gaussian = rng.standard_normal((head_dim, head_dim))
        orthonormal, triangular = np.linalg.qr(gaussian)  # columns orthonormal
        # LAPACK's QR fixes the signs of R's diagonal, which would tilt every direction
        # towards one half-space (and bias the estimate); undoing it makes Q uniform (Haar)
        blocks.append((orthonormal * np.sign(np.diag(triangular))).T)
    directions = np.concatenate(blocks)[:n_features]  # (m, Dh), unit rows
    lengths = np.linalg.norm(rng.standard_normal((n_features, head_dim)), axis=1)  # (m,) chi(Dh)
    return directions * lengths[:, None]


def feature_map(x, omega, keep=None, per_row=True):
    """x (B, H, L, Dh), already divided by Dh^¼, Ω (m, Dh) -> φ(x) (B, H, L, m).

    per_row: the stabilizer c is each row's max (queries); else one max per (b, h) over the
    rows with keep (keys). Rows where keep is False get φ = 0."""
    projected = x @ omega.T.astype(x.dtype)  # (B, H, L, m)
    exponent = projected - 0.5 * (x * x).sum(axis=-1, keepdims=True)  # (B, H, L, m)
    if per_row:
        stabilizer = exponent.max(axis=-1, keepdims=True)  # (B, H, L, 1)
    else:
        valid = exponent if keep is None else np.where(keep, exponent, -np.inf)
        stabilizer = valid.max(axis=(-2, -1), keepdims=True)  # (B, H, 1, 1)
        stabilizer = np.where(np.isfinite(stabilizer), stabilizer, 0.0)
    features = np.exp(exponent - stabilizer) / math.sqrt(omega.shape[0])  # (B, H, L, m)
    return features if keep is None else features * keep


def feature_map_backward(dfeatures, features, x, omega):
    """dφ (B, H, L, m) -> dx (B, H, L, Dh), for x already divided by Dh^¼ (the caller
    multiplies by Dh^-¼). The stabilizer cancels in the output, so it takes no gradient."""
    weighted = dfeatures * features  # (B, H, L, m)
    return weighted @ omega.astype(x.dtype) - weighted.sum(axis=-1, keepdims=True) * x


def _chunks(length, size=CHUNK):
    return [(start, min(start + size, length)) for start in range(0, length, size)]


def performer_forward(q, k, v, omega, key_mask=None, causal=False, chunk=CHUNK):
    """q (B, H, T, Dh), k, v (B, H, S, Dh), Ω (m, Dh), key_mask ~(B, H, 1, S)
    -> out (B, H, T, Dh), cache. causal needs T = S; chunk: positions per causal chunk."""
    batch, heads, tgt_len, head_dim = q.shape
    src_len = k.shape[2]
    if omega.ndim != 2 or omega.shape[1] != head_dim:
        raise ValueError(f"performer features Ω must be (m, Dh={head_dim}), got {omega.shape}")
    if causal and tgt_len != src_len:
        raise ValueError(f"performer: causal=True needs as many queries as keys, got T={tgt_len}, S={src_len}")
    root = head_dim**0.25  # x/Dh^¼ on both sides gives the 1/√Dh of the scores
    keep = None if key_mask is None else key_mask[..., 0, :, None]  # (B, H|1, S, 1)
    # pass 1: the features
    q_scaled, k_scaled = q / root, k / root  # (B, H, T, Dh), (B, H, S, Dh)
    phi_q = feature_map(q_scaled, omega)  # (B, H, T, m)
    phi_k = feature_map(k_scaled, omega, keep, per_row=False)  # (B, H, S, m)
    # pass 2: numerator and denominator
    if not causal:
        kv = phi_k.swapaxes(-1, -2) @ v  # (B, H, m, Dh)
        z = phi_k.sum(axis=-2)  # (B, H, m)
        numerator = phi_q @ kv  # (B, H, T, Dh)
        denominator = phi_q @ z[..., None]  # (B, H, T, 1)
    else:
        numerator = np.empty_like(q)  # (B, H, T, Dh)
        denominator = np.empty(q.shape[:3] + (1,), dtype=q.dtype)  # (B, H, T, 1)
        kv = np.zeros((batch, heads, omega.shape[0], head_dim), dtype=q.dtype)  # (B, H, m, Dh): Σ_{s<t0}
        z = np.zeros((batch, heads, omega.shape[0], 1), dtype=q.dtype)  # (B, H, m, 1)
        for t0, t1 in _chunks(tgt_len, positive_int("performer chunk", chunk)):
            fq, fk = phi_q[:, :, t0:t1], phi_k[:, :, t0:t1]  # (B, H, C, m)
            local = np.tril(fq @ fk.swapaxes(-1, -2))  # (B, H, C, C): s ≤ t inside the chunk
            numerator[:, :, t0:t1] = fq @ kv + local @ v[:, :, t0:t1]
            denominator[:, :, t0:t1] = fq @ z + local.sum(axis=-1, keepdims=True)
            kv = kv + fk.swapaxes(-1, -2) @ v[:, :, t0:t1]  # the prefix sums, one chunk on
            z = z + fk.sum(axis=-2)[..., None]
    # pass 3: the ratio (0 where no key contributes)
    nonzero = denominator > 0
    safe = np.where(nonzero, denominator, 1.0)  # (B, H, T, 1)
    out = np.where(nonzero, numerator / safe, 0.0).astype(q.dtype, copy=False)  # (B, H, T, Dh)
    cache = (q_scaled, k_scaled, v, omega, keep, causal, phi_q, phi_k, safe, nonzero, out, chunk)
    return out, cache


def performer_backward(dout, cache):
    """dout (B, H, T, Dh) -> dq (B, H, T, Dh), dk, dv (B, H, S, Dh)."""
    q_scaled, k_scaled, v, omega, keep, causal, phi_q, phi_k, safe, nonzero, out, chunk = cache
    root = q_scaled.shape[-1] ** 0.25
    # in the forward pass this was: out = N / D
    dnum = np.where(nonzero, dout / safe, 0.0)  # (B, H, T, Dh)
    dden = np.where(nonzero, -(dout * out).sum(axis=-1, keepdims=True) / safe, 0.0)  # (B, H, T, 1)
    if not causal:
        # in the forward pass this was: N = φ(Q)·KV, D = φ(Q)·z
        kv = phi_k.swapaxes(-1, -2) @ v  # (B, H, m, Dh), recomputed: O(S·m·Dh)
        z = phi_k.sum(axis=-2)[..., None]  # (B, H, m, 1)
        dphi_q = dnum @ kv.swapaxes(-1, -2) + dden @ z.swapaxes(-1, -2)  # (B, H, T, m)
        dkv = phi_q.swapaxes(-1, -2) @ dnum  # (B, H, m, Dh)
        dz = phi_q.swapaxes(-1, -2) @ dden  # (B, H, m, 1)
        # in the forward pass this was: KV = φ(K)ᵀ·V, z = φ(K)ᵀ·1
        dphi_k = v @ dkv.swapaxes(-1, -2) + dz.swapaxes(-1, -2)  # (B, H, S, m)
        dv = phi_k @ dkv  # (B, H, S, Dh)
    else:
        dphi_q, dphi_k, dv = np.empty_like(phi_q), np.empty_like(phi_k), np.empty_like(v)
        chunks = _chunks(q_scaled.shape[2], chunk)
        # forward sweep: dφ(q_t) reads the prefix sums KV_{≤t}, z_{≤t}
        kv = np.zeros(phi_k.shape[:2] + (phi_k.shape[-1], v.shape[-1]), dtype=v.dtype)  # (B, H, m, Dh)
        z = np.zeros(phi_k.shape[:2] + (phi_k.shape[-1], 1), dtype=v.dtype)  # (B, H, m, 1)
        for t0, t1 in chunks:
            fq, fk, vc = phi_q[:, :, t0:t1], phi_k[:, :, t0:t1], v[:, :, t0:t1]  # (B, H, C, ·)
            dn, dd = dnum[:, :, t0:t1], dden[:, :, t0:t1]  # (B, H, C, Dh), (B, H, C, 1)
            # in the forward pass this was: local = tril(φq·φkᵀ), N = φq·KV + local·V, D = φq·z + local·1
            dlocal = np.tril(dn @ vc.swapaxes(-1, -2) + dd)  # (B, H, C, C)
            dphi_q[:, :, t0:t1] = dn @ kv.swapaxes(-1, -2) + dd @ z.swapaxes(-1, -2) + dlocal @ fk
            kv = kv + fk.swapaxes(-1, -2) @ vc
            z = z + fk.sum(axis=-2)[..., None]
        # reverse sweep: dφ(k_s), dv_s read the suffix sums G_s = Σ_{t≥s} φq_t·dN_tᵀ, g_s
        suffix = np.zeros_like(kv)  # (B, H, m, Dh): Σ over the later chunks
        suffix_den = np.zeros_like(z)  # (B, H, m, 1)
        for t0, t1 in reversed(chunks):
            fq, fk, vc = phi_q[:, :, t0:t1], phi_k[:, :, t0:t1], v[:, :, t0:t1]
            dn, dd = dnum[:, :, t0:t1], dden[:, :, t0:t1]
            local = np.tril(fq @ fk.swapaxes(-1, -2))  # (B, H, C, C)
            dlocal = np.tril(dn @ vc.swapaxes(-1, -2) + dd)  # (B, H, C, C)
            dphi_k[:, :, t0:t1] = vc @ suffix.swapaxes(-1, -2) + suffix_den.swapaxes(-1, -2) + dlocal.swapaxes(-1, -2) @ fq
            dv[:, :, t0:t1] = fk @ suffix + local.swapaxes(-1, -2) @ dn
            suffix = suffix + fq.swapaxes(-1, -2) @ dn
            suffix_den = suffix_den + fq.swapaxes(-1, -2) @ dd
    if keep is not None:
        dphi_k = dphi_k * keep  # in the forward pass this was: φ(K) ⊙ keep
    # in the forward pass this was: φ = feature_map(x / Dh^¼)
    dq = feature_map_backward(dphi_q, phi_q, q_scaled, omega) / root  # (B, H, T, Dh)
    dk = feature_map_backward(dphi_k, phi_k, k_scaled, omega) / root  # (B, H, S, Dh)
    return dq, dk, dv


def performer_weights(cache):
    """The estimated weights D⁻¹·φ(Q)·φ(K)ᵀ (B, H, T, S), lower-triangular when causal:
    the explicit (T, S) form, for the trace and the tests at small sizes."""
    causal, phi_q, phi_k, safe, nonzero = cache[5], cache[6], cache[7], cache[8], cache[9]
    weights = phi_q @ phi_k.swapaxes(-1, -2)  # (B, H, T, S)
    if causal:
        weights = np.tril(weights)
    return np.where(nonzero, weights / safe, 0.0)
