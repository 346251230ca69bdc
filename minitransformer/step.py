"""One training step: the recipe of "Attention Is All You Need", section 5, in one function.

    loss, grads = forward + backward(model, batch)     label-smoothed cross-entropy (§5.4),
                                                        dropout on (§5.4)
    g          ← g · min(1, clip_norm / ‖g‖)           the global norm clipped (not in the
                                                        paper; PyTorch's and fairseq's default)
    lr         = factor · D^-0.5 · min(s^-0.5, s · warmup^-1.5)      the schedule (§5.3)
    θ          ← Adam(θ, g, lr; β₁ = 0.9, β₂ = 0.98, ε = 1e-9)        the optimizer (§5.3)

    from minitransformer.step import Recipe, train_step
    recipe = Recipe.of(train_config)        # or Recipe(label_smoothing=0.1, clip_norm=1.0, …)
    result = train_step(model, batch, optimizer, step=1, recipe=recipe, rng=stream)
    result.loss, result.grad_norm, result.lr

The trainer (train.py), the benchmarks (bench/bench_train.py, bench/bench_gpu.py) and the
learning tests all call this function, so the step they time or test is the one that trains.
A loss or a gradient that stops being finite raises TrainingDiverged *before* the weights
change, so the last checkpoint and the weights in memory both stay good.
"""

import math
from typing import NamedTuple

from .optim import clip_grad_norm, noam_lr


class TrainingDiverged(RuntimeError):
    """The loss or the gradient stopped being finite; the weights were not updated."""


class Recipe(NamedTuple):
    """The numbers of section 5 that a step needs (TrainConfig holds them for a run)."""

    d_model: int
    warmup_steps: int = 4000
    lr_factor: float = 1.0
    label_smoothing: float = 0.1
    clip_norm: float = 1.0

    @classmethod
    def of(cls, config):
        """The recipe of a TrainConfig: D is its model's width (an RNN's state width)."""
        return cls(config.model.d_model, config.warmup_steps, config.lr_factor, config.label_smoothing,
                   config.clip_norm)


class StepResult(NamedTuple):
    loss: float  # the label-smoothed training loss of the batch, before the update
    grad_norm: float  # the gradient's global norm, before clipping
    lr: float  # the learning rate the update used


def whole_batch_loss_and_grads(model, batch, smoothing, rng):
    """The forward and backward of one process on the whole batch: the loss; the gradients in model.grads."""
    xp = model.xp
    return model.loss_and_grads(xp.asarray(batch.src), xp.asarray(batch.tgt_in), xp.asarray(batch.tgt_out),
                                smoothing, rng)


def train_step(model, batch, optimizer, step, recipe, rng=None, loss_and_grads=whole_batch_loss_and_grads):
    """One update of ``model`` on ``batch`` (src, tgt_in, tgt_out): ``step`` counts from 1 and
    sets the learning rate; ``rng`` is the dropout stream (None: no dropout). ``loss_and_grads``
    is the forward-backward; data parallel (parallel/data_parallel.py) passes one that shares
    the batch out over the ranks and all-reduces their gradients."""
    # forward-backward: dropout on, label-smoothed cross-entropy; the gradients land in model.grads
    loss = loss_and_grads(model, batch, recipe.label_smoothing, rng)
    if not math.isfinite(loss):
        raise TrainingDiverged(f"the loss is {loss} at step {step}")
    # clip: the global gradient norm to clip_norm
    grad_norm = clip_grad_norm(model.grads, recipe.clip_norm)
    if not math.isfinite(grad_norm):
        raise TrainingDiverged(f"the gradient norm is {grad_norm} at step {step} (loss {loss:.4f})")
    # the learning rate: linear warmup, then 1/√step decay
    lr = noam_lr(step, recipe.d_model, recipe.warmup_steps, recipe.lr_factor)
    # step: Adam
    optimizer.step(model.params, model.grads, lr)
    return StepResult(loss, grad_norm, lr)
