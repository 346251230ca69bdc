"""Cross-entropy with label smoothing (section 5.4), ignoring padding.

The target distribution puts 1 − ε on the right token and spreads ε uniformly over all V
tokens (PyTorch's convention):

    q = (1 − ε)·onehot(y) + ε/V

and the loss per token is the cross-entropy −Σ_v q_v log p_v with p = softmax(z). Writing
log p = z − m − lse, with m the row maximum and lse = log Σ exp(z − m), this is

    loss = m + lse − (1 − ε)·z_y − (ε/V)·Σ_v z_v

which needs no (B, T, V) array of log-probabilities. The mean is over non-padding targets.

Backward: the softmax and the log cancel into the famous

    ∂loss/∂z = p − q       (per token, divided by the number of non-padding targets)

and padding positions get zero gradient. The forward has p in hand, so it forms the
gradient there, in the same pass (as the compiled kernel does), and keeps only that: the
cache is the (B, T, V) gradient, not the probabilities and the targets.
"""

from typing import NamedTuple

from ..arrays import array_module, check_token_ids


class CrossEntropyCache(NamedTuple):
    """What the backward needs: the gradient of the mean loss, formed by the forward."""

    dlogits: object  # (B, T, V)


def cross_entropy_forward(logits, targets, pad_id, smoothing=0.0):
    """logits (B, T, V), targets (B, T) int -> loss (scalar), cache."""
    xp = array_module(logits)
    if logits.shape[:-1] != targets.shape:
        raise ValueError(f"logits of shape {logits.shape} do not match targets of shape {targets.shape}")
    vocab_size = logits.shape[-1]
    check_token_ids(targets, vocab_size, name="target ids")
    valid = targets != pad_id  # (B, T)
    n_valid = max(int(valid.sum()), 1)
    row_max = logits.max(axis=-1, keepdims=True)  # (B, T, 1)
    exp_shifted = xp.exp(logits - row_max)  # (B, T, V)
    row_sum = exp_shifted.sum(axis=-1, keepdims=True)  # (B, T, 1)
    probs = exp_shifted / row_sum  # (B, T, V)
    logsumexp = (row_max + xp.log(row_sum))[..., 0]  # (B, T)
    target_logit = xp.take_along_axis(logits, targets[..., None], axis=-1)[..., 0]  # (B, T)
    per_token = logsumexp - (1.0 - smoothing) * target_logit  # (B, T)
    if smoothing:
        per_token = per_token - (smoothing / vocab_size) * logits.sum(axis=-1)
    loss = (per_token * valid).sum() / n_valid
    return loss, CrossEntropyCache(_dlogits(probs, targets, valid, n_valid, smoothing))


def _dlogits(probs, targets, valid, n_valid, smoothing):
    """probs (B, T, V) -> ∂loss/∂z = (p − q) / n_valid at non-padding targets, 0 elsewhere."""
    xp = array_module(probs)
    vocab_size = probs.shape[-1]
    # a fresh C-ordered array, so that the reshape below is a view we can write through
    dlogits = xp.ascontiguousarray(probs - smoothing / vocab_size)  # (B, T, V): p − ε/V everywhere …
    # … and (1 − ε) less at each target, which makes it p − q
    rows = dlogits.reshape(-1, vocab_size)  # (B*T, V), a view
    rows[xp.arange(rows.shape[0]), targets.reshape(-1)] -= 1.0 - smoothing
    dlogits *= (valid / n_valid)[..., None].astype(dlogits.dtype)
    return dlogits


def cross_entropy_backward(cache):
    """-> dlogits (B, T, V), the gradient of the mean loss (formed by the forward)."""
    return cache.dlogits
