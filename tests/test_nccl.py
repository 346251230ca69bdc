"""The NCCL all-reduce on GPUs (minitransformer/parallel/nccl.py): a world of one on one GPU,
and 2 ranks over `mpiexec -n 2` where 2 GPUs exist; skipped, saying why, elsewhere."""

import numpy as np
import pytest

from minitransformer.backends import cupy_backend

_reason = cupy_backend.unavailable_reason()
if _reason is not None:
    pytest.skip(f"no GPU for NCCL here: {_reason}", allow_module_level=True)

import cupy  # noqa: E402

try:
    from cupy.cuda import nccl  # noqa: E402, F401
except ImportError as error:
    pytest.skip(f"CuPy has no NCCL here: {error}", allow_module_level=True)

from helpers import data_parallel_case  # noqa: E402
from minitransformer.model import make_model  # noqa: E402
from minitransformer.parallel.data_parallel import DataParallelStep  # noqa: E402
from minitransformer.parallel.nccl import NcclWorld  # noqa: E402
from minitransformer.parallel.world import SingleWorld  # noqa: E402
from mpi_launch import ROOT, run_mpi  # noqa: E402
from test_data_parallel import assert_grads_close, single_process  # noqa: E402


def test_a_world_of_one_on_one_gpu_sums_to_itself_and_steps_as_one_process():
    world = NcclWorld(SingleWorld())
    buffer = cupy.arange(10, dtype=cupy.float64)
    assert cupy.all(world.allreduce_sum(buffer) == cupy.arange(10))
    model, batch, smoothing = data_parallel_case()
    expected_loss, expected = single_process(model, batch, smoothing)
    gpu_model = make_model(model.config, backend="cupy", params=model.params)
    loss = DataParallelStep(world, gpu_model).loss_and_grads(gpu_model, batch, smoothing, None)
    assert abs(loss - expected_loss) <= 1e-12 * abs(expected_loss)
    assert_grads_close("NCCL, a world of one", {k: v.get() for k, v in gpu_model.grads.items()}, expected)


@pytest.mark.skipif(cupy.cuda.runtime.getDeviceCount() < 2, reason="NCCL across ranks needs 2 GPUs; this machine has 1")
def test_two_ranks_on_two_gpus_equal_one_process(tmp_path):
    model, batch, smoothing = data_parallel_case()
    expected_loss, expected = single_process(model, batch, smoothing)
    result_path = tmp_path / "step.npz"
    run_mpi(2, [str(ROOT / "tests" / "mpi" / "data_parallel_worker.py"), str(result_path), "cupy"])
    result = np.load(result_path)
    assert abs(float(result["loss"]) - expected_loss) <= 1e-12 * abs(expected_loss)
    assert_grads_close("2 ranks with NCCL", {key: result[f"grad/{key}"] for key in expected}, expected)
