"""Ring attention: self-attention over a sequence split across P ranks (Liu et al., 2023).

Size letters: B batch, H heads, T the whole sequence, Tr the rank's block of it, Sb a
key/value block, Dh head width, P ranks.

Rank r holds the queries, keys and values of one block of positions, rows
bounds[r] = [start_r, stop_r) of the sequence (block_bounds: sizes differ by at most one,
so T need not divide by P). Its output rows need every key block, so the key/value blocks
travel around a ring: at step s, rank r holds block j = (r − s) mod P, computes attention
of its queries against it, and hands it to rank r + 1. After P steps every rank has seen
every block, and nobody ever held more than two blocks of keys (the one in use and the one
arriving). Each pair (Q_r, K_j, V_j) is computed by chapter 8's blocked core
(layers/blocked_attention.py) in tiles of PAIR_BLOCK, so no (Tr, Sb) matrix of scores is
held either: memory per rank is O(T/P), not O(T) and not O(T²).

Forward: each block gives a partial result, normalized within the block,

    O_rj = softmax(Q_r·K_jᵀ/√Dh + M_rj)·V_j,   L_rj = logsumexp(Q_r·K_jᵀ/√Dh + M_rj)

and two partials merge exactly as the online softmax of chapter 8 merges blocks (there
the running pair was (m, l, acc); here it is (O, L), already divided by its own sum):

    L = logaddexp(L_a, L_b),   O = exp(L_a − L)·O_a + exp(L_b − L)·O_b

A block whose keys are all masked for a row has L = −∞ and weight exp(−∞) = 0; a row that
sees no allowed key at all keeps L = −∞ and O = 0, as the reference core (layers/attention.py)
does, never NaN.

Backward, with the global L_r and O_r from the forward and D_r = rowsum(dO_r ⊙ O_r)
(the identity of layers/blocked_attention.py that replaces the softmax's row-sum): a
block's weights are recomputed from the global log-sum-exp, P_rj = exp(Q_r·K_jᵀ/√Dh − L_r),
and then

    dV_j += P_rjᵀ·dO_r,   dS_rj = P_rj ⊙ (dO_r·V_jᵀ − D_r)
    dQ_r += dS_rj·K_j/√Dh,   dK_j += dS_rjᵀ·Q_r/√Dh

dQ_r stays home; dK_j and dV_j gather a term from every rank, so an accumulator for them
travels around the ring with block j and, after P steps and one more hop, arrives back at
its owner holding Σ_r of the terms.

Masks: ``key_valid`` (B, T) marks real tokens (a padding mask: each rank's columns travel
with its keys); ``causal`` lets query t see keys s ≤ t, by global position. Under the
causal mask a block that lies wholly above the diagonal (its first key after the rank's
last query) contributes nothing and is skipped, forward and backward; it still travels on.
With contiguous blocks this leaves rank 0 one block of work and rank P − 1 all P (the
striped or zigzag layouts of later papers balance it; we keep the plain one).

One algorithm, two forms. The classes RingForward and RingBackward hold one rank's state
and take one step on a block; ring_attention_*_simulated runs P of them in one process and
moves the blocks by rotating a list (for the book and the tests); ring_mpi.py runs one per
MPI process and moves them with Isend/Irecv, posted before the step's compute.
"""

from typing import NamedTuple

import numpy as np

from ..layers.blocked_attention import blocked_attention_backward, blocked_attention_forward

# the pair's own blocking (chapter 8): queries and keys in tiles of this many, so that no
# (Tr, Sb) matrix of scores is ever held and a rank's memory grows like T/P
PAIR_BLOCK = 128


def block_bounds(length, parts):
    """[(start, stop)] of ``parts`` contiguous blocks covering range(length): the first
    length % parts blocks have one position more (numpy.array_split's rule)."""
    if parts < 1:
        raise ValueError(f"the ring needs at least one rank, got {parts}")
    if length < parts:
        raise ValueError(f"a sequence of {length} positions cannot be split over {parts} ranks")
    base, extra = divmod(length, parts)
    bounds, start = [], 0
    for rank in range(parts):
        stop = start + base + (1 if rank < extra else 0)
        bounds.append((start, stop))
        start = stop
    return bounds


class KVBlock(NamedTuple):
    """What travels around the ring: one rank's keys and values and their padding mask."""

    index: int  # whose block this is (its owner's rank)
    k: np.ndarray  # (B, H, Sb, Dh)
    v: np.ndarray  # (B, H, Sb, Dh)
    key_valid: np.ndarray | None  # (B, Sb) bool, True for a real token; None: no padding


def pair_mask(key_valid, q_bounds, k_bounds, causal):
    """The mask of one (query block, key block) pair -> (skip, mask ~(B, 1, Tr, Sb) or None).

    skip is True when causality masks the whole pair (the block is above the diagonal)."""
    (q0, q1), (k0, k1) = q_bounds, k_bounds
    if causal and k0 > q1 - 1:
        return True, None
    mask = None if key_valid is None else key_valid[:, None, None, :]  # (B, 1, 1, Sb)
    if causal and k1 - 1 > q0:  # the diagonal crosses this pair: some keys lie in some rows' future
        query_pos = np.arange(q0, q1)[:, None]  # (Tr, 1)
        key_pos = np.arange(k0, k1)[None, :]  # (1, Sb)
        allowed = (key_pos <= query_pos)[None, None]  # (1, 1, Tr, Sb)
        mask = allowed if mask is None else mask & allowed
    return False, mask


def merge_partials(out_a, lse_a, out_b, lse_b):
    """Two partial results over disjoint key sets -> the result over their union.

    out_* (B, H, Tr, Dh), lse_* (B, H, Tr): L = logaddexp(L_a, L_b), O = Σ exp(L_x − L)·O_x."""
    lse = np.logaddexp(lse_a, lse_b)  # (B, H, Tr); −∞ only where both are
    shift = np.where(np.isfinite(lse), lse, 0.0)  # (B, H, Tr)
    weight_a = np.exp(lse_a - shift)[..., None]  # (B, H, Tr, 1), 0 where L_a = −∞
    weight_b = np.exp(lse_b - shift)[..., None]  # (B, H, Tr, 1)
    return weight_a * out_a + weight_b * out_b, lse


# --- one rank's state: the same in the simulation and over MPI ---------------------------------


class RingForward:
    """Rank ``rank``'s forward: its queries, and the merge of every block seen so far."""

    def __init__(self, q, rank, bounds, causal=False, block_size=PAIR_BLOCK):
        self.q, self.rank, self.bounds, self.causal, self.block_size = q, rank, bounds, causal, block_size
        batch, heads, length, head_dim = q.shape
        self.out = np.zeros((batch, heads, length, head_dim), dtype=q.dtype)  # (B, H, Tr, Dh)
        self.lse = np.full((batch, heads, length), -np.inf, dtype=q.dtype)  # (B, H, Tr): nothing seen yet

    def step(self, block: KVBlock):
        """Attend to one key/value block and merge it into the running result."""
        skip, mask = pair_mask(block.key_valid, self.bounds[self.rank], self.bounds[block.index], self.causal)
        if skip:
            return
        # the pair (Q_r, K_j, V_j) is attention of its own: chapter 8's blocked core gives
        # its output normalized within the block and its log-sum-exp
        out, lse = blocked_attention_forward(self.q, block.k, block.v, mask, self.block_size)  # (B,H,Tr,Dh), (B,H,Tr)
        self.out, self.lse = merge_partials(self.out, self.lse, out, lse)


class RingBackward:
    """Rank ``rank``'s backward: dQ of its queries, and its terms of every block's dK, dV."""

    def __init__(self, dout, q, out, lse, rank, bounds, causal=False, block_size=PAIR_BLOCK):
        self.dout, self.q, self.out, self.lse = dout, q, out, lse
        self.rank, self.bounds, self.causal, self.block_size = rank, bounds, causal, block_size
        self.dq = np.zeros_like(q)  # (B, H, Tr, Dh)

    def step(self, block: KVBlock):
        """-> this rank's terms (dk, dv) of block's gradients (B, H, Sb, Dh), or None when skipped."""
        skip, mask = pair_mask(block.key_valid, self.bounds[self.rank], self.bounds[block.index], self.causal)
        if skip:
            return None
        # chapter 8's blocked backward, given the GLOBAL out and lse: it recomputes the global
        # softmax's weights of this pair, exp(S_rj − L_r), and D_r = rowsum(dO_r ⊙ O_r) from them
        dq, dk, dv = blocked_attention_backward(self.dout, self.q, block.k, block.v, self.out, self.lse, mask,
                                                self.block_size)
        self.dq += dq
        return dk, dv


def add_terms(accumulator, terms):
    """accumulator (dk, dv) + this rank's terms (or None for a skipped pair)."""
    if terms is None:
        return accumulator
    return accumulator[0] + terms[0], accumulator[1] + terms[1]


# --- the simulation: P ranks in one process ----------------------------------------------------


def split_sequence(x, bounds, axis):
    """x -> [x's block of each rank] along ``axis`` (views)."""
    index = [slice(None)] * x.ndim
    blocks = []
    for start, stop in bounds:
        index[axis] = slice(start, stop)
        blocks.append(x[tuple(index)])
    return blocks


def pass_to_next(items):
    """One hop of the ring: rank r receives what rank r − 1 held."""
    return [items[(rank - 1) % len(items)] for rank in range(len(items))]


def ring_attention_forward_simulated(q, k, v, ranks, key_valid=None, causal=False, block_size=PAIR_BLOCK):
    """q, k, v (B, H, T, Dh), key_valid (B, T) bool or None, split over ``ranks`` simulated
    ranks -> out (B, H, T, Dh), lse (B, H, T): the blocks of all ranks put back together."""
    bounds = block_bounds(q.shape[2], ranks)
    valid = [None] * ranks if key_valid is None else split_sequence(key_valid, bounds, axis=1)
    states = [RingForward(q_r, rank, bounds, causal, block_size)
              for rank, q_r in enumerate(split_sequence(q, bounds, axis=2))]
    blocks = [KVBlock(rank, k_r, v_r, valid[rank]) for rank, (k_r, v_r)
              in enumerate(zip(split_sequence(k, bounds, axis=2), split_sequence(v, bounds, axis=2)))]
    for _ in range(ranks):
        for rank in range(ranks):  # in the MPI form, these run at the same time
            states[rank].step(blocks[rank])
        blocks = pass_to_next(blocks)
    out = np.concatenate([state.out for state in states], axis=2)  # (B, H, T, Dh)
    lse = np.concatenate([state.lse for state in states], axis=2)  # (B, H, T)
    return out, lse


def ring_attention_backward_simulated(dout, q, k, v, out, lse, ranks, key_valid=None, causal=False,
                                      block_size=PAIR_BLOCK):
    """dout (B, H, T, Dh), q, k, v, and out, lse from the forward -> dq, dk, dv (B, H, T, Dh)."""
    bounds = block_bounds(q.shape[2], ranks)
    valid = [None] * ranks if key_valid is None else split_sequence(key_valid, bounds, axis=1)
    dout_r, q_r, out_r, lse_r = (split_sequence(x, bounds, axis=2) for x in (dout, q, out, lse))
    states = [RingBackward(dout_r[rank], q_r[rank], out_r[rank], lse_r[rank], rank, bounds, causal, block_size)
              for rank in range(ranks)]
    blocks = [KVBlock(rank, k_r, v_r, valid[rank]) for rank, (k_r, v_r)
              in enumerate(zip(split_sequence(k, bounds, axis=2), split_sequence(v, bounds, axis=2)))]
    # the dK/dV accumulator of each block travels with it, starting at zero with its owner
    accumulators = [(np.zeros_like(block.k), np.zeros_like(block.v)) for block in blocks]
    for _ in range(ranks):
        for rank in range(ranks):
            accumulators[rank] = add_terms(accumulators[rank], states[rank].step(blocks[rank]))
        blocks, accumulators = pass_to_next(blocks), pass_to_next(accumulators)
    # after P steps and P hops, accumulator r is back with its owner, rank r
    dq = np.concatenate([state.dq for state in states], axis=2)  # (B, H, T, Dh)
    dk = np.concatenate([acc[0] for acc in accumulators], axis=2)  # (B, H, T, Dh)
    dv = np.concatenate([acc[1] for acc in accumulators], axis=2)  # (B, H, T, Dh)
    return dq, dk, dv
