"""What the approximate attention cores share: parameter checks, the key mask, a masked softmax.

Size letters, for every file of this package: B batch, H heads, T queries, S keys,
Dh head width; r the Linformer rank, m the number of random features, landmarks or
samples (each file says which).

Every method takes the model's boolean mask as a key mask, ~(B, H, 1, S), True where a
key is a real token. Causality is not a mask here: a method that can be causal takes
``causal=True`` and keeps it inside its own computation (a (T, S) causal mask is exactly
the quadratic object these methods exist to avoid).
"""

import numpy as np

from ..layers.attention import masked_softmax  # noqa: F401  (the methods import it from here)


def positive_int(name, value):
    """``value`` as an int; a one-line ValueError naming the parameter when it is not ≥ 1."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")
    return int(value)


def key_mask_of(mask, shape):
    """The model's mask ~(B, H, T, S) -> key mask (B|1, H|1, 1, S) bool, or None.

    A key is kept when some query may attend to it; for a padding mask that is the
    padding mask itself, and for padding & causal it is again the padding (the last query
    sees every real key)."""
    if mask is None:
        return None
    if mask.ndim != 4 or mask.shape[-1] not in (1, shape[3]):
        raise ValueError(f"attention mask of shape {mask.shape} does not broadcast to (B, H, T, S) = {shape}")
    return np.asarray(mask).any(axis=2, keepdims=True)  # (B|1, H|1, 1, S)


def softmax_backward(dprobs, probs):
    """dscores = P ⊙ (dP − rowsum(dP ⊙ P)): the softmax backward over the last axis."""
    return probs * (dprobs - (dprobs * probs).sum(axis=-1, keepdims=True))
