"""Head-parallel attention (DeepSpeed-Ulysses; Jacobs et al., 2023): an all-to-all from positions to heads.

Size letters: B batch, H heads, Hp = H/P a rank's heads, T the whole sequence, Tr a
rank's block of it, Dh head width, P ranks.

Rank r starts where the ring starts: q, k, v (B, H, Tr, Dh), every head of its block of
positions, rows bounds[r] of block_bounds(T, P). The ring keeps that layout and moves the
keys around; Ulysses changes the layout instead. In one all-to-all, rank r cuts its block
by heads into P pieces and sends piece j (heads j·Hp … (j + 1)·Hp − 1 of its positions)
to rank j; from every rank i it receives rank i's positions of its own heads, and lays
them side by side along the sequence:

    q, k, v  (B, H, Tr, Dh) on rank r   --all-to-all-->   (B, Hp, T, Dh) on rank r

Each rank now holds whole sequences for Hp heads, and attention is the plain core of
layers/attention.py, head by head, with the whole sequence's masks (the padding of every
key is all-gathered, B·T booleans; the causal mask is by global position). A second
all-to-all moves the output back, pieces by positions this time:

    out      (B, Hp, T, Dh) on rank r   --all-to-all-->   (B, H, Tr, Dh) on rank r

The backward walks the same exchanges in reverse: dout to heads, the core's backward for
the rank's Hp heads, and dq, dk, dv back to positions. Q, K and V travel in one
all-to-all, stacked (so do dQ, dK and dV): four all-to-alls per layer, forward and
backward, and one all-gather of the padding. Nothing is merged and no softmax is
split: every head's attention is computed whole, on one rank. The price is P ≤ H (and P
must divide H), and each rank holds the (B, Hp, T, T) weights of its heads, the plain
core's; chapter 8's blocked core in its place would make that linear too.

One algorithm, two forms, as for the ring: ulysses_forward and ulysses_backward are one
rank's part and take the exchange as an argument; ulysses_*_simulated runs P ranks on
threads of one process (links.ThreadLink), ulysses_*_mpi one rank per MPI process
(Alltoallv, Allgatherv).
"""

from typing import NamedTuple

import numpy as np

from ..layers.attention import attention_backward, attention_forward
from .links import run_on_threads
from .ring_attention import block_bounds, split_sequence


def check_heads(heads, ranks):
    if heads % ranks != 0:
        raise ValueError(f"head-parallel attention gives each of {ranks} ranks H/P heads; H = {heads} does not "
                         f"divide by {ranks}")
    return heads // ranks


def pieces_by_heads(x, ranks):
    """x (B, H, Tr, Dh) -> [rank j's heads of it, (B, Hp, Tr, Dh)] for j in 0 … P − 1."""
    group = check_heads(x.shape[1], ranks)
    return [np.ascontiguousarray(x[:, j * group:(j + 1) * group]) for j in range(ranks)]


def pieces_by_positions(x, bounds):
    """x (B, Hp, T, Dh) -> [rank i's positions of it, (B, Hp, Tr_i, Dh)] for every rank i."""
    return [np.ascontiguousarray(piece) for piece in split_sequence(x, bounds, axis=2)]


class Exchange(NamedTuple):
    """One rank's collectives: alltoall(pieces, shapes) sends pieces[j] to rank j and
    returns [what rank i sent here, of shape shapes[i]]; allgather(block) returns every
    rank's block in rank order."""

    rank: int
    alltoall: object
    allgather: object


class UlyssesCache(NamedTuple):
    q: np.ndarray  # (B, Hp, T, Dh): the rank's heads, every position
    k: np.ndarray  # (B, Hp, T, Dh)
    v: np.ndarray  # (B, Hp, T, Dh)
    probs: np.ndarray  # (B, Hp, T, T): the plain core's weights of those heads


def to_heads(exchange, x, bounds):
    """(B, H, Tr, Dh) on each rank -> (B, Hp, T, Dh): the first all-to-all."""
    batch, heads, _, head_dim = x.shape
    group = check_heads(heads, len(bounds))
    shapes = [(batch, group, stop - start, head_dim) for start, stop in bounds]  # from each rank i
    return np.concatenate(exchange.alltoall(pieces_by_heads(x, len(bounds)), shapes), axis=2)


def to_positions(exchange, x, bounds):
    """(B, Hp, T, Dh) on each rank -> (B, H, Tr, Dh): the all-to-all back."""
    batch, group, _, head_dim = x.shape
    start, stop = bounds[exchange.rank]
    shapes = [(batch, group, stop - start, head_dim)] * len(bounds)  # this rank's positions, from each rank
    return np.concatenate(exchange.alltoall(pieces_by_positions(x, bounds), shapes), axis=1)


def whole_mask(exchange, key_valid, length, causal):
    """The mask of the whole sequence ~(B, 1, T, T) or None, from this rank's key padding (B, Tr)."""
    mask = None
    if key_valid is not None:
        valid = np.concatenate(exchange.allgather(np.ascontiguousarray(key_valid, dtype=np.uint8)), axis=1)  # (B, T)
        mask = valid.astype(bool)[:, None, None, :]  # (B, 1, 1, T)
    if causal:
        allowed = np.tril(np.ones((length, length), dtype=bool))[None, None]  # (1, 1, T, T)
        mask = allowed if mask is None else mask & allowed
    return mask


def ulysses_forward(exchange, q, k, v, bounds, key_valid=None, causal=False):
    """One rank's q, k, v (B, H, Tr, Dh) and key padding (B, Tr) -> out (B, H, Tr, Dh), cache."""
    # q, k and v travel in one all-to-all, stacked along the batch axis
    qkv_heads = to_heads(exchange, np.concatenate([q, k, v], axis=0), bounds)  # (3B, Hp, T, Dh)
    q_heads, k_heads, v_heads = np.split(qkv_heads, 3, axis=0)  # (B, Hp, T, Dh) each
    mask = whole_mask(exchange, key_valid, bounds[-1][1], causal)
    out_heads, probs = attention_forward(q_heads, k_heads, v_heads, mask)  # (B, Hp, T, Dh), (B, Hp, T, T)
    return to_positions(exchange, out_heads, bounds), UlyssesCache(q_heads, k_heads, v_heads, probs)


def ulysses_backward(exchange, dout, cache, bounds):
    """dout (B, H, Tr, Dh), the forward's cache -> dq, dk, dv (B, H, Tr, Dh) of this rank's positions."""
    # in the forward pass this was: out = to_positions(attention(q_heads, k_heads, v_heads))
    dout_heads = to_heads(exchange, dout, bounds)  # (B, Hp, T, Dh)
    grads = attention_backward(dout_heads, cache.q, cache.k, cache.v, cache.probs)  # (B, Hp, T, Dh) each
    # in the forward pass this was: q_heads, k_heads, v_heads = to_heads([q; k; v]), one all-to-all
    dqkv = to_positions(exchange, np.concatenate(grads, axis=0), bounds)  # (3B, H, Tr, Dh)
    return tuple(np.split(dqkv, 3, axis=0))  # dq, dk, dv (B, H, Tr, Dh)


# --- over MPI: one rank per process --------------------------------------------------------------


def mpi_exchange(comm):
    """The Exchange of an MPI communicator: Alltoallv and Allgatherv on flat buffers."""

    def alltoall(pieces, shapes):
        counts = [int(np.prod(shape)) for shape in shapes]
        received = np.empty(sum(counts), dtype=pieces[0].dtype)  # (Σ counts,)
        sent = np.concatenate([piece.reshape(-1) for piece in pieces])  # (Σ sizes,)
        comm.Alltoallv([sent, [piece.size for piece in pieces]], [received, counts])
        return [chunk.reshape(shape) for chunk, shape in zip(np.split(received, np.cumsum(counts)[:-1]), shapes)]

    def allgather(block):
        shapes = comm.allgather(block.shape)
        counts = [int(np.prod(shape)) for shape in shapes]
        received = np.empty(sum(counts), dtype=block.dtype)
        comm.Allgatherv(block.reshape(-1), [received, counts])
        return [chunk.reshape(shape) for chunk, shape in zip(np.split(received, np.cumsum(counts)[:-1]), shapes)]

    return Exchange(comm.Get_rank(), alltoall, allgather)


def ulysses_attention_forward_mpi(comm, q, k, v, total_len, key_valid=None, causal=False):
    """This rank's q, k, v (B, H, Tr, Dh), key_valid (B, Tr) or None -> out (B, H, Tr, Dh), cache."""
    return ulysses_forward(mpi_exchange(comm), q, k, v, block_bounds(total_len, comm.Get_size()), key_valid, causal)


def ulysses_attention_backward_mpi(comm, dout, cache, total_len):
    """This rank's dout (B, H, Tr, Dh) and the forward's cache -> dq, dk, dv (B, H, Tr, Dh)."""
    return ulysses_backward(mpi_exchange(comm), dout, cache, block_bounds(total_len, comm.Get_size()))


# --- the simulation: P ranks on threads ----------------------------------------------------------


def thread_exchange(link):
    """The Exchange of a simulated rank (links.ThreadLink): every message through the board."""

    def alltoall(pieces, shapes):
        sent = link.exchange(pieces)  # sent[i][j]: what rank i sends to rank j
        return [sent[i][link.rank] for i in range(link.size)]

    return Exchange(link.rank, alltoall, link.exchange)


def ulysses_attention_simulated(q, k, v, dout, ranks, key_valid=None, causal=False):
    """q, k, v, dout (B, H, T, Dh), key_valid (B, T) or None, on ``ranks`` simulated ranks
    -> out, dq, dk, dv (B, H, T, Dh): every rank's blocks put back together."""
    bounds = block_bounds(q.shape[2], ranks)
    check_heads(q.shape[1], ranks)
    q_r, k_r, v_r, dout_r = (split_sequence(x, bounds, axis=2) for x in (q, k, v, dout))
    valid_r = [None] * ranks if key_valid is None else split_sequence(key_valid, bounds, axis=1)

    def rank_program(link):
        exchange, rank = thread_exchange(link), link.rank
        out, cache = ulysses_forward(exchange, q_r[rank], k_r[rank], v_r[rank], bounds, valid_r[rank], causal)
        return (out,) + ulysses_backward(exchange, dout_r[rank], cache, bounds)

    results = run_on_threads(ranks, rank_program)  # [(out, dq, dk, dv) of each rank]
    return tuple(np.concatenate([result[i] for result in results], axis=2) for i in range(4))  # (B, H, T, Dh) each
