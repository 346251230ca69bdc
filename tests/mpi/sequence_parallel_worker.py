"""Run by tests/test_sequence_parallel.py under `mpiexec -n P`: one sequence-parallel step
of the tiny float64 model on the batch of sequence_parallel_case(argv[2], backend argv[3]);
every rank saves its loss and gradients to argv[1] with its rank in the name (step-rank0.npz, …)."""

import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from helpers import sequence_parallel_case  # noqa: E402 (tests/helpers.py)

from minitransformer.layers.dropout import DropoutStream  # noqa: E402
from minitransformer.parallel.sequence_parallel import SequenceParallelStep  # noqa: E402
from minitransformer.parallel.world import get_world  # noqa: E402

world = get_world()
model, batch, smoothing = sequence_parallel_case(sys.argv[2], sys.argv[3])
rng = DropoutStream(7) if model.config.dropout > 0 else None  # the same stream on every rank
step = SequenceParallelStep(world, model)
loss = step.loss_and_grads(model, batch, smoothing, rng)
np.savez(sys.argv[1].replace(".npz", f"-rank{world.rank}.npz"), loss=loss,
         **{f"grad/{key}": value for key, value in model.grads.items()})
