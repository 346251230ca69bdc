"""Convolution, pooling and BatchNorm agree with PyTorch, through the fixture that
tests/tools/make_vision_torch_fixture.py wrote with PyTorch (torch is not needed here).

All in float64; the only differences are in the order of summation, so 1e-10 relative
(and 1e-12 absolute for entries near zero) is ample, while any wrong term, index or
transposition would be off by order 1. Max pooling on tied inputs checks that the gradient
goes to the same element of a tie as PyTorch's (the first maximum)."""

import json
from pathlib import Path

import numpy as np
import pytest

from minitransformer.vision.batchnorm import batchnorm_backward, batchnorm_forward
from minitransformer.vision.conv import conv2d_backward, conv2d_forward
from minitransformer.vision.pool import avgpool2d_backward, avgpool2d_forward, maxpool2d_backward, maxpool2d_forward

FIXTURE = Path(__file__).resolve().parent / "fixtures" / "torch_vision.npz"
RTOL, ATOL = 1e-10, 1e-12


@pytest.fixture(scope="module")
def fixture():
    with np.load(FIXTURE) as data:
        arrays = {key: data[key] for key in data.files}
    arrays["cases"] = json.loads(str(arrays["cases"]))
    return arrays


def compare(name, ours, fixture):
    """Print OK / NOT OK per tensor (as llm.c's test does) and fail naming the bad ones."""
    bad = []
    for key, value in ours.items():
        expected = fixture[f"{name}.{key}"]
        ok = value.shape == expected.shape and np.allclose(value, expected, rtol=RTOL, atol=ATOL)
        error = float(np.abs(value - expected).max()) if value.shape == expected.shape else float("inf")
        print(f"{name}.{key}: {'OK' if ok else 'NOT OK'} (max |Δ| {error:.1e})")
        if not ok:
            bad.append(f"{key} (max |Δ| {error:.1e})")
    assert not bad, f"{name} disagrees with PyTorch in: {', '.join(bad)}"


def _tuple(value):
    return tuple(value) if isinstance(value, list) else value


@pytest.mark.parametrize("name", ["conv_plain", "conv_strided", "conv_dilated", "conv_grouped", "conv_depthwise"])
def test_conv2d_agrees_with_pytorch(fixture, name):
    case = {key: _tuple(value) for key, value in fixture["cases"][name].items()}
    y, cache = conv2d_forward(fixture[f"{name}.x"], fixture[f"{name}.w"], fixture[f"{name}.b"], **case)
    dx, dw, db = conv2d_backward(fixture[f"{name}.dy"], cache)
    compare(name, {"y": y, "dx": dx, "dw": dw, "db": db}, fixture)


@pytest.mark.parametrize("name", ["avgpool_2", "avgpool_3s2p1", "maxpool_2", "maxpool_3s1p1", "maxpool_ties",
                                  "maxpool_ties_overlap"])  # fmt: skip
def test_pooling_agrees_with_pytorch(fixture, name):
    case = fixture["cases"][name]
    forward, backward = (maxpool2d_forward, maxpool2d_backward) if name.startswith("max") else (avgpool2d_forward, avgpool2d_backward)
    y, cache = forward(fixture[f"{name}.x"], case["kernel"], case["stride"], case["padding"])
    dx = backward(fixture[f"{name}.dy"], cache)
    compare(name, {"y": y, "dx": dx}, fixture)
    if case.get("ties"):
        assert len(np.unique(fixture[f"{name}.x"])) == 3  # the case really is full of ties


@pytest.mark.parametrize("name", ["bn_train_4d", "bn_train_2d"])
def test_batchnorm_train_agrees_with_pytorch(fixture, name):
    running_mean, running_var = fixture[f"{name}.running_mean"].copy(), fixture[f"{name}.running_var"].copy()
    y, cache = batchnorm_forward(fixture[f"{name}.x"], fixture[f"{name}.gamma"], fixture[f"{name}.beta"],
                                 running_mean, running_var, training=True, momentum=0.1, eps=1e-5)  # fmt: skip
    dx, dgamma, dbeta = batchnorm_backward(fixture[f"{name}.dy"], cache)
    compare(name, {"y": y, "dx": dx, "dgamma": dgamma, "dbeta": dbeta, "new_running_mean": running_mean,
                   "new_running_var": running_var}, fixture)  # fmt: skip


def test_batchnorm_eval_agrees_with_pytorch(fixture):
    name = "bn_eval"
    y, cache = batchnorm_forward(fixture[f"{name}.x"], fixture[f"{name}.gamma"], fixture[f"{name}.beta"],
                                 fixture[f"{name}.running_mean"], fixture[f"{name}.running_var"], training=False)  # fmt: skip
    dx, dgamma, dbeta = batchnorm_backward(fixture[f"{name}.dy"], cache)
    compare(name, {"y": y, "dx": dx, "dgamma": dgamma, "dbeta": dbeta}, fixture)
