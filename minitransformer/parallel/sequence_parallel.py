"""Sequence parallel training: the encoder's positions split over P ranks, its self-attention on the ring.

Size letters: B batch, S source length, Sr a rank's block of it, T target length, D width,
P ranks.

    {"sequence_parallel": true}  in a run config, then
    mpiexec -n 2 .venv/bin/python -m mpi4py -m minitransformer train --config my.json

Data parallelism copies the model and splits the batch; every rank still holds whole
sequences, and the attention matrix of one sequence is (S, S). Here every rank takes the
whole batch but only a block of each source sentence's positions, rows bounds[r] of
block_bounds(S, P) (sizes differ by at most one, so S need not divide by P). One step:

  1. each rank embeds its block, with the positional encodings of its global positions
     (PE[start_r … stop_r − 1]), and runs the encoder layers on it (model.encode, the
     same layer functions). Everything in an encoder layer but self-attention acts on each
     position alone; self-attention is the ring of ring_attention.py, which the block's
     kernels object (SequenceBlock) puts in place of the core. A rank holds O(S/P) of
     every activation, and the ring never more than two key/value blocks, so the
     encoder's memory per rank falls as 1/P;
  2. the encoder's output is all-gathered: every rank has the whole memory (B, S, D);
  3. every rank runs the same decoder on it, with the same dropout masks: the decoder,
     its loss and its gradients are replicated, bit for bit. It returns ∂L/∂memory
     (B, S, D), and each rank keeps the rows of its own block;
  4. each rank runs the encoder's backward on its block (the ring again: dK, dV travel
     back to their owners). An encoder parameter's gradient is a sum over positions,
     ∂L/∂W = Σ_s (the term of position s), so each rank holds the sum over its block, and
     one all-reduce of the encoder's gradients (encoder.* and the source embedding) adds
     them up. The decoder's gradients need no message: they are the same everywhere.
     With one shared embedding matrix its gradient is the decoder's part plus the
     all-reduced encoder part.

After the step every rank holds the single-process gradient of the whole batch (to the
rounding of sums taken in another order), so clipping and Adam keep the copies of the
weights identical, as in data parallel.

Dropout. The masks are counter-based (layers/dropout.py): a unit's mask bit is a hash of
the call's key and the unit's number in the tensor. Every rank uses the single-process
stream, so every call has the single-process key, and the block draws the bits of its own
units' numbers in the whole (B, S, …) tensor. The masks are exactly those of one process:
the switch changes where the encoder computes, not what it computes, even with dropout on.

What it costs: per encoder layer the ring sends every key/value block once around
(2·(P − 1)/P · B·S·D numbers per rank, forward; twice that backward, with dK and dV), the
all-gather (P − 1)/P · B·S·D, and the all-reduce the encoder's parameters once per step.
The decoder is not split: its cost per rank stays that of one process (the long sequence
is the source). Evaluation and decoding run on one process, as in data parallel.

Two forms, one rank program (sequence_parallel_loss_and_grads): SequenceParallelStep runs
it over MPI (links.MPILink) for the trainer; simulated_sequence_parallel runs P copies on
threads of one process (links.ThreadLink), for the tests and the book.
"""

import numpy as np

from ..configs import ConfigError
from ..layers import dropout
from ..model import decode_backward, encode_backward, padding_mask
from ..params import add_into
from .data_parallel import FlatGradients
from .links import MPILink, run_on_threads
from .ring_attention import PAIR_BLOCK, block_bounds


def unsupported(config, backend_name="numpy"):
    """Why ``config`` (a TrainConfig or ModelConfig) cannot train sequence-parallel, or None."""
    if getattr(config, "architecture", "transformer") != "transformer":
        return f"architecture={config.architecture!r} (the ring replaces a Transformer encoder's self-attention)"
    config = getattr(config, "model", config)  # a run config holds its model's config
    if getattr(config, "attention_window", None) is not None:
        return f"attention_window={config.attention_window} (the ring computes global attention)"
    if getattr(config, "encoder_attention", "exact") != "exact":
        return f"encoder_attention={config.encoder_attention!r} (the ring computes exact attention)"
    if backend_name == "cupy":
        return "the cupy backend (the ring's blocks are NumPy arrays: use numpy or cython)"
    return None


def block_index(shape, total, start):
    """The numbers of a block's units in the whole tensor: a block of shape (B, Sr, …),
    positions start … start + Sr − 1 of ``total`` -> uint32 of that shape.

    In the whole tensor (B, S, W) (W the product of the trailing sizes) unit (b, s, w) is
    number (b·S + s)·W + w."""
    batch, length = shape[:2]
    width = int(np.prod(shape[2:]))
    if batch * total * width >= 1 << 32:
        raise ValueError(f"the dropout generator numbers elements with 32 bits; {batch * total * width} is too many")
    rows = np.arange(batch, dtype=np.int64)[:, None] * total + start + np.arange(length)  # (B, Sr)
    index = rows[..., None] * width + np.arange(width)  # (B, Sr, W)
    return index.astype(np.uint32).reshape(shape)


def key_valid_of(mask):
    """The encoder's self-attention mask (B, 1, 1, Sr) -> the padding of the block's keys (B, Sr)."""
    if mask is None:
        return None
    if mask.ndim != 4 or mask.shape[1:3] != (1, 1):
        raise ValueError(f"sequence parallelism takes a padding mask (B, 1, 1, S), got shape {mask.shape}")
    return np.ascontiguousarray(mask[:, 0, 0, :])  # (B, Sr)


class SequenceBlock:
    """The kernels object of one rank's block of positions: the backend ``exact`` in every
    respect but two. Its self-attention core is the ring over ``link``, and its dropout
    draws, for the block, the masks of the whole sequence (see the module docstring)."""

    def __init__(self, exact, link, bounds):
        self.exact, self.link, self.bounds = exact, link, bounds
        self.start, self.total = bounds[link.rank][0], bounds[-1][1]

    def __getattr__(self, name):
        if name == "exact":
            raise AttributeError(name)
        return getattr(self.exact, name)

    def attention_forward_blocked(self, q, k, v, mask, block_size):
        """q, k, v (B, H, Sr, Dh), mask (B, 1, 1, Sr) -> out (B, H, Sr, Dh), lse (B, H, Sr)."""
        return self.link.ring_forward(q, k, v, key_valid_of(mask), self.bounds, block_size)

    def attention_backward_blocked(self, dout, q, k, v, out, lse, mask, block_size):
        """-> dq, dk, dv (B, H, Sr, Dh): dk and dv the sums over every rank's queries."""
        return self.link.ring_backward(dout, q, k, v, out, lse, key_valid_of(mask), self.bounds, block_size)

    def attention_forward(self, q, k, v, mask):
        """The fused core's slot: the ring in tiles of PAIR_BLOCK; the state for the backward
        (out, lse, mask) stands where the fused core keeps its weights."""
        out, lse = self.attention_forward_blocked(q, k, v, mask, PAIR_BLOCK)
        return out, (out, lse, mask)

    def attention_backward(self, dout, q, k, v, state):
        out, lse, mask = state
        return self.attention_backward_blocked(dout, q, k, v, out, lse, mask, PAIR_BLOCK)

    def dropout_forward(self, x, p, rng):
        """x (B, Sr, …) -> the block of Dropout of the whole (B, S, …) tensor."""
        return dropout.dropout_forward(x, p, rng, block_index(x.shape, self.total, self.start))


def with_columns(src, columns, pad_id):
    """src (B, S) with padding columns added up to ``columns`` (every rank needs a position;
    padding changes no result: it is masked as a key and has no gradient)."""
    if src.shape[1] >= columns:
        return src
    return np.pad(src, ((0, 0), (0, columns - src.shape[1])), constant_values=pad_id)  # (B, columns)


def sequence_parallel_loss_and_grads(model, batch, smoothing, rng, link):
    """One rank's part of a step on ``batch`` -> (the batch's loss, {key: gradient}), both
    the same on every rank: the single-process step's. ``rng`` is the single-process
    dropout stream (every rank has its own copy, at the same state), or None."""
    config, backend = model.config, model.backend
    src = with_columns(np.asarray(batch.src), link.size, config.pad_id)  # (B, S)
    bounds = block_bounds(src.shape[1], link.size)
    start, stop = bounds[link.rank]
    block = SequenceBlock(model.encoder_backend, link, bounds)
    # 1. this rank's block of the encoder, at its global positions, self-attention on the ring
    memory_block, _, cache_encode = model.encode(src[:, start:stop], rng, offset=start, backend=block)  # (B, Sr, D)
    # 2. the whole memory, on every rank
    memory = link.allgather_positions(memory_block, bounds)  # (B, S, D)
    # 3. the decoder, its loss and its backward: the same on every rank
    logits, cache_decode = model.decode(batch.tgt_in, memory, padding_mask(src, config.pad_id), rng)  # (B, T, V)
    loss, cache_loss = backend.cross_entropy_forward(logits, np.asarray(batch.tgt_out), config.pad_id, smoothing)
    grads = {}
    _, dmemory = decode_backward(model, backend.cross_entropy_backward(cache_loss), cache_decode, grads)  # (B, S, D)
    # 4. the encoder's backward on this rank's rows of ∂L/∂memory, then the sum of its gradients
    encoder_grads = {}
    encode_backward(model, dmemory[:, start:stop], cache_encode, encoder_grads)
    flat = FlatGradients(encoder_grads)
    flat.pack(encoder_grads, 0.0, 1.0)
    link.allreduce_sum(flat.buffer)
    flat.unpack(encoder_grads)
    add_into(grads, "", encoder_grads)
    return float(loss), grads


def store_grads(model, grads):
    """model.grads := grads, in the parameters' dtype (as Transformer.backward leaves them)."""
    for key, value in model.params.items():
        model.grads[key] = grads[key].astype(value.dtype, copy=False)


class SequenceParallelStep:
    """The forward-backward of one sequence-parallel step over MPI: what the trainer calls
    in place of data parallel's (parallel/trainer.py) when TrainConfig.sequence_parallel."""

    # every rank draws the single-process dropout stream: its masks are cut by position
    stream_rank = 0

    def __init__(self, world, model):
        reason = unsupported(model.config, model.backend.name)
        if reason is not None:  # a ConfigError: the command line prints it in one line
            raise ConfigError(f"sequence_parallel cannot train with {reason}")
        self.link = MPILink(world)

    def loss_and_grads(self, model, batch, smoothing, rng):
        """-> the global batch's loss; model.grads hold the global batch's gradients."""
        loss, grads = sequence_parallel_loss_and_grads(model, batch, smoothing, rng, self.link)
        store_grads(model, grads)
        return loss


def simulate_ranks(model, batch, ranks, smoothing=0.0, rng=None):
    """P ranks of a sequence-parallel step on threads of this process -> [(loss, grads)
    of each rank]. ``rng``: a DropoutStream (each rank gets a copy; it then stands where
    the ranks' copies ended) or None."""
    if rng is not None and not hasattr(rng, "state"):
        raise ValueError("sequence parallelism needs a DropoutStream (every rank draws the same keys), or None")
    streams = [None if rng is None else type(rng).from_state(rng.state()) for _ in range(ranks)]
    results = run_on_threads(ranks, lambda link: sequence_parallel_loss_and_grads(
        model, batch, smoothing, streams[link.rank], link))
    if rng is not None:
        rng.calls = streams[0].calls
    return results


def simulated_sequence_parallel(model, batch, ranks, smoothing=0.0, rng=None):
    """What P sequence-parallel ranks compute, in one process (for the book and the tests)
    -> loss; model.grads hold rank 0's gradients (every rank's are the same)."""
    loss, grads = simulate_ranks(model, batch, ranks, smoothing, rng)[0]
    store_grads(model, grads)
    return loss
