"""gru.py against torch.nn.GRU, through tests/fixtures/torch_gru.npz (written by
tests/tools/make_gru_torch_fixture.py; torch is not needed here).

Float64 on both sides, the same function in the same gate order (r, z, n) with the same
two bias vectors, so the only differences are rounding in different summation orders:
1e-8 absolute is far above that (~1e-15) and far below any real disagreement."""

import pathlib

import numpy as np
import pytest

from minitransformer.rnn.gru import bidirectional_backward, bidirectional_forward, gru_layer_backward, gru_layer_forward

FIXTURE = pathlib.Path(__file__).parent / "fixtures" / "torch_gru.npz"
TOLERANCE = 1e-8
H = 3


@pytest.fixture(scope="module")
def fixture():
    with np.load(FIXTURE) as arrays:
        return {key: arrays[key] for key in arrays.files}


def params_of(fixture, prefix):
    return {name: fixture[f"{prefix}param.{name}"].copy() for name in ("w_input", "w_hidden", "b_input", "b_hidden")}


def assert_close(name, ours, theirs):
    error = float(np.max(np.abs(ours - theirs)))
    assert error <= TOLERANCE, f"{name}: max |ours − torch| = {error:.3e} > {TOLERANCE:.0e}"


def test_one_direction_forward_and_gradients(fixture):
    params = params_of(fixture, "uni.")
    states, cache = gru_layer_forward(fixture["uni.x"], None, params, fixture["uni.h0"].copy())  # (B, T, H)
    assert_close("states", states, fixture["uni.states"])
    assert_close("h_n", states[:, -1], fixture["uni.h_n"])
    dstates = fixture["uni.dout"].copy()
    dstates[:, -1] += fixture["uni.dh_n"]  # h_n is the last state
    dx, dh0, grads = gru_layer_backward(dstates, cache)
    assert_close("dx", dx, fixture["uni.grad.x"])
    assert_close("dh0", dh0, fixture["uni.grad.h0"])
    for name, grad in grads.items():
        assert_close(f"d{name}", grad, fixture[f"uni.grad.{name}"])


def test_bidirectional_padded_forward_and_gradients(fixture):
    params = {f"{direction}.{name}": value for direction in ("forward", "backward")
              for name, value in params_of(fixture, f"bi.{direction}.").items()}
    x, lengths = fixture["bi.x"], fixture["bi.lengths"]
    mask = np.arange(x.shape[1])[None, :] < lengths[:, None]  # (B, T)
    annotations, cache = bidirectional_forward(x, mask, params)  # (B, T, 2H)
    # torch pads its output with zeros; ours carries the state through padded steps
    assert_close("annotations (real positions)", annotations * mask[..., None], fixture["bi.annotations"])
    # h_n: the left-to-right state after the last word, the right-to-left state after the first
    assert_close("h_n forward", annotations[:, -1, :H], fixture["bi.h_n"][0])
    assert_close("h_n backward", annotations[:, 0, H:], fixture["bi.h_n"][1])
    dannotations = fixture["bi.dout"].copy()
    dannotations[:, -1, :H] += fixture["bi.dh_n"][0]
    dannotations[:, 0, H:] += fixture["bi.dh_n"][1]
    dx, grads = bidirectional_backward(dannotations, cache)
    assert_close("dx", dx * mask[..., None], fixture["bi.grad.x"])
    for name, grad in grads.items():
        assert_close(f"d{name}", grad, fixture[f"bi.{name.replace('.', '.grad.')}"])
