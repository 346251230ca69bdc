"""The gradient all-reduce on GPUs: NCCL through CuPy (cupy.cuda.nccl), one rank per GPU.

    mpiexec -n 4 python -m mpi4py -m minitransformer train --backend cupy   # 4 GPUs of one machine

On the CuPy backend the gradients live on the GPU. Copying them to the host for MPI and
back would cross PCIe twice per step; NCCL reduces them GPU to GPU (NVLink or PCIe within a
machine, InfiniBand or sockets between machines), in the same ring all-reduce that the
book describes. MPI is still the launcher and the control channel: rank 0 makes NCCL's
unique id (128 bytes that tell the others where to meet) and broadcasts it over MPI; then
every rank joins one NCCL communicator. The broadcasts of the start (weights, optimizer
state) stay on MPI, through host copies: they happen once.

Each rank uses GPU local_rank % device_count, so that P ranks on a machine of P GPUs take
one each. A world of one works too (one GPU, no mpiexec), which is how the code path is
tested on a machine with a single GPU.
"""

import os

LOCAL_RANK_VARS = ("MPI_LOCALRANKID", "OMPI_COMM_WORLD_LOCAL_RANK")


def local_rank(world):
    """This rank's index among the ranks of its machine (the launcher's word, else its rank)."""
    for name in LOCAL_RANK_VARS:
        if os.environ.get(name, "").isdigit():
            return int(os.environ[name])
    return world.rank


def nccl_dtype(dtype):
    from cupy.cuda import nccl

    return {"float32": nccl.NCCL_FLOAT32, "float64": nccl.NCCL_FLOAT64, "float16": nccl.NCCL_FLOAT16}[str(dtype)]


class NcclWorld:
    """A world whose allreduce_sum runs on the GPUs with NCCL; everything else is ``world``'s."""

    def __init__(self, world):
        import cupy
        from cupy.cuda import nccl

        self.world = world
        self.rank, self.size = world.rank, world.size
        self.device = local_rank(world) % cupy.cuda.runtime.getDeviceCount()
        cupy.cuda.Device(self.device).use()
        unique_id = nccl.get_unique_id() if world.rank == 0 else None
        unique_id = world.bcast_object(unique_id, "the broadcast of NCCL's id")
        self.comm = nccl.NcclCommunicator(world.size, unique_id, world.rank)

    def allreduce_sum(self, buffer, what="an all-reduce"):
        """buffer (a contiguous CuPy array) -> the same array, the sum over every rank."""
        import cupy
        from cupy.cuda import nccl

        stream = cupy.cuda.get_current_stream()
        self.comm.allReduce(buffer.data.ptr, buffer.data.ptr, buffer.size, nccl_dtype(buffer.dtype), nccl.NCCL_SUM,
                            stream.ptr)
        stream.synchronize()
        return buffer

    def __getattr__(self, name):  # bcast_object, barrier, fail, …: MPI's
        return getattr(self.world, name)
