"""Run by tests/test_data_parallel.py under `mpiexec -n P`: one data-parallel step of the
tiny float64 model on the global batch of data_parallel_case(); rank 0 saves the loss and
the all-reduced gradients to argv[1] (.npz). With argv[2] == "cupy" (tests/test_nccl.py)
the model is on the GPU and the gradients are summed by NCCL."""

import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from helpers import data_parallel_case  # noqa: E402 (tests/helpers.py)

from minitransformer.parallel.data_parallel import DataParallelStep  # noqa: E402
from minitransformer.parallel.world import get_world  # noqa: E402

from minitransformer.arrays import to_numpy  # noqa: E402

world = get_world()
model, batch, smoothing = data_parallel_case()
if len(sys.argv) > 2 and sys.argv[2] == "cupy":
    from minitransformer.model import make_model
    from minitransformer.parallel.nccl import NcclWorld

    world = NcclWorld(world)
    model = make_model(model.config, backend="cupy", params=model.params)
step = DataParallelStep(world, model)
loss = step.loss_and_grads(model, batch, smoothing, rng=None)
if world.rank == 0:
    np.savez(sys.argv[1], loss=loss, **{f"grad/{key}": to_numpy(value) for key, value in model.grads.items()})
