"""The learning-rate schedule of the paper (section 5.3): linear warmup, then 1/√step decay.

    lr(step) = factor · D^(−1/2) · min(step^(−1/2), step · warmup^(−3/2))

The two branches meet at step = warmup, where lr peaks at factor · (D · warmup)^(−1/2).
Warmup matters for post-norm Transformers: early on Adam's second-moment estimate is poor
and a full-size step can push the LayerNorms into a bad place.
"""


def noam_lr(step, d_model, warmup, factor=1.0):
    """The learning rate at ``step`` (counted from 1)."""
    step = max(step, 1)
    return factor * d_model**-0.5 * min(step**-0.5, step * warmup**-1.5)
