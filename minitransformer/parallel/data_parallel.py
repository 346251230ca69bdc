"""Data parallel: every rank trains on its share of each batch, and the gradients are summed.

Size letters: B rows of the global batch, Br the rank's rows, S and T the source and
target lengths, P ranks, N non-pad target tokens in the global batch, n_r in rank r's share.

Every rank holds the whole model and builds the same global batch (the Batcher is a pure
function of the seed and the position), then takes its share of the rows. The loss of one
step is the mean over the batch's N target tokens, label smoothing included,

    loss = (1/N)·Σ_tokens ℓ = Σ_r (n_r/N)·loss_r,     loss_r = (1/n_r)·Σ_{tokens of r} ℓ

and so, the gradient being linear,

    ∇loss = Σ_r (n_r/N)·∇loss_r

Each rank runs the ordinary forward and backward on its share (model.loss_and_grads gives
the mean over its own n_r tokens), scales by n_r/N (N is known everywhere: every rank has
the global batch), writes the scaled gradients and loss into one flat buffer, and one
all-reduce sums the buffers. One message of all the parameters instead of one per tensor:
a collective costs a latency α plus bytes/bandwidth, and the model has ~40 tensors.
After it every rank holds the same gradient as one process on the whole batch (to the
rounding of a sum taken in another order), so clipping and Adam, run everywhere, keep
the copies of the weights identical without ever sending them.

The share is balanced by tokens, not rows: the batch's rows are sorted by length (the
Batcher cuts batches from sorted pairs), so contiguous shares are split where the running
count of real tokens crosses r/P of the total. Each share then drops the padding columns
it does not need, which changes no result (padding is masked everywhere) and saves work.
"""

from typing import NamedTuple

import numpy as np


def balanced_split(costs, parts):
    """costs (B,) of contiguous items -> [start of part r for r in 0..parts] (parts + 1 ints),
    cut where the running cost is nearest r/parts of the total; every part gets an item
    while there are enough of them."""
    count = len(costs)
    cumulative = np.cumsum(costs)  # (B,)
    total = float(cumulative[-1]) if count else 0.0
    starts = [0]
    for part in range(1, parts):
        target = total * part / parts
        cut = int(np.searchsorted(cumulative, target, side="right"))  # items whose running cost ≤ target
        if cut < count and abs(cumulative[cut] - target) < abs((cumulative[cut - 1] if cut else 0) - target):
            cut += 1  # one more item lands nearer the target
        low = starts[-1] + (1 if count - starts[-1] > parts - part else 0)
        high = count - (parts - part) if count >= parts else count
        starts.append(min(max(cut, low), max(high, low)))
    starts.append(count)
    return starts


class Shard(NamedTuple):
    """One rank's rows of a batch, cropped to their own longest sentence."""

    src: np.ndarray  # (Br, S') int64
    tgt_in: np.ndarray  # (Br, T') int64
    tgt_out: np.ndarray  # (Br, T') int64
    n_tgt_tokens: int  # n_r: non-pad targets in these rows


def shard_batch(batch, rank, size, pad_id):
    """rank's token-balanced share of ``batch`` (a batching.Batch), or None for no rows."""
    src_lengths = (batch.src != pad_id).sum(axis=1)  # (B,)
    tgt_lengths = (batch.tgt_out != pad_id).sum(axis=1)  # (B,)
    starts = balanced_split(src_lengths + tgt_lengths, size)
    rows = slice(starts[rank], starts[rank + 1])
    if starts[rank] == starts[rank + 1]:
        return None
    src_width = max(int(src_lengths[rows].max()), 1)
    tgt_width = max(int(tgt_lengths[rows].max()), 1)
    return Shard(batch.src[rows, :src_width], batch.tgt_in[rows, :tgt_width], batch.tgt_out[rows, :tgt_width],
                 int(tgt_lengths[rows].sum()))


class FlatGradients:
    """One buffer for every gradient and the loss: [grad of key 0 | key 1 | … | loss]."""

    def __init__(self, params, xp=np):
        self.keys = list(params)
        self.shapes = [params[key].shape for key in self.keys]
        sizes = [int(np.prod(shape)) for shape in self.shapes]
        self.offsets = np.concatenate([[0], np.cumsum(sizes)]).astype(int)
        dtype = next(iter(params.values())).dtype
        self.buffer = xp.zeros(int(self.offsets[-1]) + 1, dtype=dtype)  # (n_params + 1,)

    @property
    def nbytes(self):
        return self.buffer.nbytes

    def pack(self, grads, loss, scale):
        """buffer := scale · [grads…, loss]; scale 0 (a rank with no rows) gives zeros."""
        for key, start, stop in zip(self.keys, self.offsets[:-1], self.offsets[1:]):
            self.buffer[start:stop] = grads[key].reshape(-1)
            self.buffer[start:stop] *= scale
        self.buffer[-1] = loss * scale
        return self.buffer

    def unpack(self, grads):
        """grads[key] := views of the (summed) buffer; -> the summed loss."""
        for key, shape, start, stop in zip(self.keys, self.shapes, self.offsets[:-1], self.offsets[1:]):
            grads[key] = self.buffer[start:stop].reshape(shape)
        return float(self.buffer[-1])


def local_contribution(model, batch, rank, size, smoothing, rng, flat):
    """Rank ``rank``'s term of the step: (n_r/N)·[∇loss_r, loss_r] in ``flat.buffer``."""
    shard = shard_batch(batch, rank, size, model.config.pad_id)
    if shard is None or batch.n_tgt_tokens == 0:
        flat.buffer[...] = 0
        return flat.buffer
    xp = model.xp
    loss = model.loss_and_grads(xp.asarray(shard.src), xp.asarray(shard.tgt_in), xp.asarray(shard.tgt_out),
                                smoothing, rng)
    return flat.pack(model.grads, loss, shard.n_tgt_tokens / batch.n_tgt_tokens)


class DataParallelStep:
    """The forward-backward of one data-parallel step: the local share, then one all-reduce."""

    def __init__(self, world, model):
        self.world = world
        self.stream_rank = world.rank  # each rank draws its own dropout masks (trainer.rank_stream_seed)
        self.flat = FlatGradients(model.params, model.xp)
        self.compute_seconds = self.communicate_seconds = 0.0  # of the last step (for bench/)

    def loss_and_grads(self, model, batch, smoothing, rng):
        """-> the global batch's loss; model.grads hold the global batch's gradients."""
        import time

        started = time.perf_counter()
        local_contribution(model, batch, self.world.rank, self.world.size, smoothing, rng, self.flat)
        reduced_at = time.perf_counter()
        self.world.allreduce_sum(self.flat.buffer, "the gradient all-reduce")
        self.compute_seconds, self.communicate_seconds = reduced_at - started, time.perf_counter() - reduced_at
        return self.flat.unpack(model.grads)


def simulated_data_parallel(model, batch, size, smoothing=0.0, rng=None):
    """What P ranks compute together, in one process: the sum of their contributions
    (for the book and the tests) -> loss; model.grads hold the summed gradients."""
    flat = FlatGradients(model.params, model.xp)
    total = model.xp.zeros_like(flat.buffer)
    for rank in range(size):
        total += local_contribution(model, batch, rank, size, smoothing, rng, flat)
    flat.buffer[...] = total
    return flat.unpack(model.grads)
