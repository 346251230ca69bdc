"""The wire a sequence-parallel rank talks through: MPI between processes, or threads that
stand in for ranks inside one process (for the tests and the book).

Size letters: B batch, H heads, Sr a rank's block of positions, S all of them, Dh head
width, P ranks.

A link offers exactly what parallel/sequence_parallel.py needs, and nothing else:

    out, lse   = link.ring_forward(q, k, v, key_valid, bounds, block_size)     the ring of
    dq, dk, dv = link.ring_backward(dout, q, k, v, out, lse, key_valid, bounds, block_size)
                                                     parallel/ring_attention.py, on this rank's block
    whole      = link.allgather_positions(block, bounds)    (B, Sr, …) -> (B, S, …), every rank
    link.allreduce_sum(buffer)                              in place: the sum over the ranks

MPILink runs one rank per process: the ring of ring_mpi.py (each hop posted before its
compute), an Iallgatherv and world.py's all-reduce, both with its deadline. ThreadLink runs
one rank per thread: the same RingForward/RingBackward steps, and every message goes through
a board that each rank writes its item on and reads the others' from, between two barriers.
Nothing is shared but what a message would carry, so a rank's code cannot tell the two apart.
"""

import threading
from functools import reduce

import numpy as np

from .ring_attention import KVBlock, RingBackward, RingForward, add_terms
from .ring_mpi import ring_attention_backward_mpi, ring_attention_forward_mpi


class MPILink:
    """One rank of an MPI world (world.py's MPIWorld: its communicator and its deadlines)."""

    def __init__(self, world):
        self.world, self.comm = world, world.comm
        self.rank, self.size = world.rank, world.size

    def ring_forward(self, q, k, v, key_valid, bounds, block_size):
        return ring_attention_forward_mpi(self.comm, q, k, v, bounds[-1][1], key_valid, False, block_size)

    def ring_backward(self, dout, q, k, v, out, lse, key_valid, bounds, block_size):
        return ring_attention_backward_mpi(self.comm, dout, q, k, v, out, lse, bounds[-1][1], key_valid, False,
                                           block_size)

    def allgather_positions(self, block, bounds):
        """block (B, Sr, …), this rank's rows bounds[rank] -> (B, S, …), the blocks side by side."""
        batch, rest = block.shape[0], block.shape[2:]
        width = int(np.prod(rest))
        counts = [batch * (stop - start) * width for start, stop in bounds]  # elements from each rank
        received = np.empty(sum(counts), dtype=block.dtype)  # (Σ B·Sr·…,): rank 0's block, rank 1's, …
        request = self.comm.Iallgatherv(np.ascontiguousarray(block), [received, counts])
        self.world.wait(request, "the all-gather of the encoder's output")
        pieces = np.split(received, np.cumsum(counts)[:-1])
        return np.concatenate([piece.reshape((batch, stop - start) + rest)
                               for piece, (start, stop) in zip(pieces, bounds)], axis=1)  # (B, S, …)

    def allreduce_sum(self, buffer):
        self.world.allreduce_sum(buffer, "the all-reduce of the encoder's gradients")


class Board:
    """What the threads of one simulation share: a slot per rank and a barrier."""

    def __init__(self, size):
        self.slots = [None] * size
        self.barrier = threading.Barrier(size)


class ThreadLink:
    """Rank ``rank`` of P threads of this process, talking through ``board``."""

    def __init__(self, board, rank):
        self.board, self.rank, self.size = board, rank, len(board.slots)

    def exchange(self, item):
        """[every rank's item], in rank order. Each rank posts its own, all wait, all read,
        and all wait again, so that nobody posts the next item before everyone has read."""
        self.board.slots[self.rank] = item
        self.board.barrier.wait()
        items = list(self.board.slots)
        self.board.barrier.wait()
        return items

    def pass_to_next(self, item):
        """One hop of the ring: -> what rank − 1 passed."""
        return self.exchange(item)[(self.rank - 1) % self.size]

    def ring_forward(self, q, k, v, key_valid, bounds, block_size):
        """The forward of ring_attention.py: P steps, a hop after each (the last brings our block home)."""
        state = RingForward(q, self.rank, bounds, False, block_size)
        block = KVBlock(self.rank, k, v, key_valid)
        for _ in range(self.size):
            state.step(block)
            block = self.pass_to_next(block)
        return state.out, state.lse

    def ring_backward(self, dout, q, k, v, out, lse, key_valid, bounds, block_size):
        """The backward: the dK/dV accumulator of each block travels with it and, after P
        hops, is back with its owner."""
        state = RingBackward(dout, q, out, lse, self.rank, bounds, False, block_size)
        block, accumulator = KVBlock(self.rank, k, v, key_valid), (np.zeros_like(k), np.zeros_like(v))
        for _ in range(self.size):
            accumulator = add_terms(accumulator, state.step(block))
            block, accumulator = self.pass_to_next((block, accumulator))
        return state.dq, accumulator[0], accumulator[1]

    def allgather_positions(self, block, bounds):
        return np.concatenate(self.exchange(block), axis=1)  # (B, S, …)

    def allreduce_sum(self, buffer):
        # a copy goes on the board: the buffer itself is overwritten while others may still read
        buffer[...] = reduce(np.add, self.exchange(buffer.copy()))  # in rank order, the same on every rank


def run_on_threads(size, rank_program):
    """rank_program(link) on ``size`` threads, one per simulated rank -> [each rank's result].

    A rank that raises breaks the barrier, so the others stop instead of waiting forever;
    its exception is raised here."""
    board, results, errors = Board(size), [None] * size, []

    def run(rank):
        try:
            results[rank] = rank_program(ThreadLink(board, rank))
        except BaseException as error:  # noqa: BLE001: handed to the caller below
            errors.append(error)
            board.barrier.abort()

    threads = [threading.Thread(target=run, args=(rank,), name=f"simulated rank {rank}") for rank in range(size)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if errors:
        first = [error for error in errors if not isinstance(error, threading.BrokenBarrierError)] or errors
        raise first[0]
    return results
