"""Attention across processes and machines (chapter 12, docs/12-attention-across-machines.md).

    ring_attention.py   sequence parallel: key/value blocks travel around a ring of ranks,
                        merged by the online softmax; the single-process simulation of P ranks
    ring_mpi.py         the same algorithm over MPI, each hop posted before its step's compute
    sequence_parallel.py  the encoder trained sequence-parallel: each rank a block of every
                        source sentence's positions, self-attention on the ring, the decoder
                        replicated (TrainConfig.sequence_parallel)
    links.py            the wire of a sequence-parallel rank: MPI, or threads standing in for ranks
    ulysses.py          head parallel (DeepSpeed-Ulysses): an all-to-all from positions to heads
    world.py            the world of ranks: MPI when started by mpiexec, else a world of one;
                        collectives with a timeout, and the one-line message of a failed rank
    launch.py           starts mpiexec with cores/P threads per rank, and names a rank that dies
    data_parallel.py    data parallel: token-balanced shards, one flat all-reduce, the loss
                        normalized by the global token count
    trainer.py          the Trainer of train.py, spread over the ranks of the world
    nccl.py             the gradient all-reduce on GPUs, with NCCL (CuPy)

MPI comes from pip: ``pip install -e '.[mpi]'`` installs mpi4py and MPICH's wheel, and
``make train NP=2`` trains with two processes.
"""
