"""The switch: a backend whose attention core is an approximate one, for the model.

ModelConfig.encoder_attention and decoder_attention name a method and its size:

    "exact"           softmax(Q·Kᵀ/√Dh)·V, the backend's own core (the default)
    "linformer:32"    rank k = 32 (encoder only: Linformer cannot be causal)
    "performer:64"    m = 64 random features (encoder, or causal in the decoder)
    "nystrom:8"       8 landmarks (encoder only: the landmarks mix future positions)
    "sampling:16"     16 sampled keys per query (encoder only)

and ModelConfig.attention_window = w makes self-attention local; with the compiled kernels
it runs on the banded kernel (csrc/banded.pyx), which computes only the band.

Layers receive the kernels they use as an object passed down (STYLE.md, 12): the model
hands its encoder an ApproxAttention instead of the backend. It is the backend in every
respect (LayerNorm, dropout, the loss stay compiled) except attention_forward and
attention_backward, which run the method. Its "probs" are an ApproxState, whose
weights() gives the trace the method's weights over the keys, approximate or implied.

Linformer's E = F are segment means over the batch's length (min(k, S) segments). The
random parts are fixed by ModelConfig.attention_seed: the Performer features are drawn
once, when the model is built, and shared by all layers; the sampled keys are drawn afresh
at every forward, from a generator seeded the same way.
Cross-attention always stays exact.
"""

from typing import NamedTuple

import numpy as np

from .. import _ext
from .common import key_mask_of, positive_int
from .linformer import linformer_backward, linformer_forward, linformer_weights, segment_mean_projection
from .nystrom import nystrom_backward, nystrom_forward, nystrom_weights
from .performer import orthogonal_features, performer_backward, performer_forward, performer_weights
from .sampling import sampling_backward, sampling_forward, sampling_weights

METHODS = ("exact", "linformer", "performer", "nystrom", "sampling")
CAUSAL_METHODS = ("exact", "performer")
WHY_NOT_CAUSAL = {
    "linformer": "each projected key mixes every position, future ones too",
    "nystrom": "each landmark averages a segment that reaches into the future",
    "sampling": "not implemented causally here (the samples would have to be drawn per query from its past)",
}


def parse_attention(spec, field, causal=False):
    """'performer:64' -> ('performer', 64); 'exact' -> ('exact', None). A bad spec is a
    one-line ValueError naming ``field`` and the parameter."""
    if not isinstance(spec, str):
        raise ValueError(f"{field} must be a string such as 'exact' or 'performer:64', got {spec!r}")
    name, _, size = spec.strip().lower().partition(":")
    if name not in METHODS:
        raise ValueError(f"{field}: unknown attention method {name!r}; choose one of {', '.join(METHODS)}")
    if causal and name not in CAUSAL_METHODS:
        raise ValueError(f"{field}: {name} cannot be causal ({WHY_NOT_CAUSAL[name]}); use exact or performer")
    if name == "exact":
        if size:
            raise ValueError(f"{field}: exact attention takes no size, got {spec!r}")
        return name, None
    parameter = {"linformer": "rank k", "performer": "features m", "nystrom": "landmarks", "sampling": "samples m"}[name]
    try:
        value = int(size)
    except ValueError:
        raise ValueError(f"{field}: {name} needs its {parameter} as '{name}:<integer>', got {spec!r}") from None
    try:
        positive_int(f"{field}: {name} {parameter}", value)
    except ValueError as error:
        raise ValueError(str(error)) from None
    return name, value


class ApproxState(NamedTuple):
    """What an approximate core keeps for its backward, in the slot of the weights."""

    method: str
    cache: tuple
    key_len: int

    def weights(self):
        """The method's weights over the S keys (B, H, T, S), for the trace."""
        if self.method == "banded":
            return _ext.banded.band_to_dense(self.cache[0], self.cache[1], self.key_len)
        return {
            "linformer": linformer_weights,
            "performer": performer_weights,
            "nystrom": nystrom_weights,
            "sampling": sampling_weights,
        }[self.method](self.cache)


class ApproxAttention:
    """The backend ``exact`` with its attention core replaced by ``method`` of ``size``.

    causal: the core is causal by itself (the model then passes the padding mask only).
    method "banded": local attention of window ``size`` on the compiled banded kernel."""

    def __init__(self, exact, method, size, causal=False, head_dim=None, seed=0):
        if getattr(exact, "xp", np) is not np:
            raise ValueError(f"the approximate attention methods run on the CPU; the {exact.name!r} backend cannot take {method}")
        self.exact = exact
        self.method, self.size, self.causal = method, size, causal
        self.handles_causal = causal
        self.handles_window = method == "banded"
        rng = np.random.default_rng(seed)
        if method == "performer":
            self.omega = orthogonal_features(size, head_dim, rng)
        elif method == "sampling":
            self.rng = rng

    def __getattr__(self, name):
        if name == "exact":
            raise AttributeError(name)
        return getattr(self.exact, name)

    def attention_forward(self, q, k, v, mask):
        """q (B, H, T, Dh), k, v (B, H, S, Dh), mask: the key padding ~(B, 1, 1, S)
        -> out (B, H, T, Dh), ApproxState."""
        src_len = k.shape[2]
        key_mask = key_mask_of(mask, q.shape[:3] + (src_len,))  # (B|1, H|1, 1, S)
        if self.method == "banded":
            keep = None if key_mask is None else np.broadcast_to(key_mask[:, 0, 0, :], (q.shape[0], src_len))
            out, probs = _ext.banded.banded_forward(q, k, v, self.size, self.causal, keep)
            return out, ApproxState("banded", (probs, self.size), src_len)
        if self.method == "linformer":
            projection = segment_mean_projection(min(self.size, src_len), src_len)  # (k, S)
            out, cache = linformer_forward(q, k, v, projection, projection, key_mask)
        elif self.method == "performer":
            out, cache = performer_forward(q, k, v, self.omega, key_mask, self.causal)
        elif self.method == "nystrom":
            out, cache = nystrom_forward(q, k, v, min(self.size, src_len), key_mask)
        else:
            out, cache = sampling_forward(q, k, v, self.size, key_mask, self.rng)
        return out.astype(q.dtype, copy=False), ApproxState(self.method, cache, src_len)

    def attention_backward(self, dout, q, k, v, state):
        """dout (B, H, T, Dh) -> dq (B, H, T, Dh), dk, dv (B, H, S, Dh)."""
        if state.method == "banded":
            probs, window = state.cache
            return _ext.banded.banded_backward(dout, q, k, v, probs, window, self.causal)
        backward = {
            "linformer": linformer_backward,
            "performer": performer_backward,
            "nystrom": nystrom_backward,
            "sampling": sampling_backward,
        }[state.method]
        grads = backward(dout, state.cache)
        return tuple(grad.astype(q.dtype, copy=False) for grad in grads[:3])


def has_banded_kernel(backend):
    """True when local attention can run on the compiled banded kernel with this backend."""
    return _ext.banded is not None and getattr(backend, "name", None) == "cython"


def attention_backends(config, backend):
    """(encoder self-attention, decoder self-attention, decoding step) backends for the model.

    Each is ``backend`` itself where attention stays exact and masked as before."""
    encoder_method, encoder_size = parse_attention(config.encoder_attention, "ModelConfig.encoder_attention")
    decoder_method, decoder_size = parse_attention(config.decoder_attention, "ModelConfig.decoder_attention", causal=True)
    common = dict(head_dim=config.head_dim, seed=config.attention_seed)
    if config.attention_core == "blocked":
        return backend, backend, backend  # exact and blocked; a window stays a mask (ModelConfig allows no method)
    if config.attention_window is not None:
        if not has_banded_kernel(backend):
            return backend, backend, backend  # the band as a mask on the full product (model.local_mask)
        window = config.attention_window
        # a decoding step has one query: the masked exact core over the cache is already O(w)
        return (ApproxAttention(backend, "banded", window, **common),
                ApproxAttention(backend, "banded", window, causal=True, **common), backend)
    encoder = backend if encoder_method == "exact" else ApproxAttention(backend, encoder_method, encoder_size, **common)
    if decoder_method == "exact":
        return encoder, backend, backend
    # the decoding step's keys are all in the past, so the step is the non-causal form
    # over the cache, with the same random features as the causal layer
    return (encoder, ApproxAttention(backend, decoder_method, decoder_size, causal=True, **common),
            ApproxAttention(backend, decoder_method, decoder_size, **common))
