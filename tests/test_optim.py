"""The optimizer pieces against their equations, step by step."""

import math

import numpy as np
import pytest

from minitransformer.gradcheck import check_layer
from minitransformer.optim import Adam, clip_grad_norm, noam_lr


def test_adam_matches_its_equations():
    beta1, beta2, eps, lr = 0.9, 0.98, 1e-9, 0.01
    params = {"w": np.array([1.0, -2.0, 3.0])}
    grads_seq = [np.array([0.5, -1.0, 2.0]), np.array([0.1, 0.3, -0.2]), np.array([-1.0, 0.0, 0.5])]
    optimizer = Adam(params, beta1=beta1, beta2=beta2, eps=eps)
    theta, m, v = params["w"].copy(), np.zeros(3), np.zeros(3)
    for t, grad in enumerate(grads_seq, start=1):
        m = beta1 * m + (1 - beta1) * grad
        v = beta2 * v + (1 - beta2) * grad**2
        theta = theta - lr * (m / (1 - beta1**t)) / (np.sqrt(v / (1 - beta2**t)) + eps)
        optimizer.step(params, {"w": grad}, lr)
        np.testing.assert_allclose(params["w"], theta, rtol=1e-14)
    assert optimizer.step_count == 3
    # the first step has size lr in every coordinate, whatever the gradient's scale
    fresh = {"w": np.zeros(3)}
    Adam(fresh).step(fresh, {"w": np.array([1e-4, 5.0, -300.0])}, 0.1)
    np.testing.assert_allclose(np.abs(fresh["w"]), 0.1, rtol=1e-4)


def test_decoupled_weight_decay():
    params = {"w": np.array([2.0])}
    optimizer = Adam(params, weight_decay=0.1)
    optimizer.step(params, {"w": np.array([0.0])}, lr=0.5)
    # a zero gradient leaves only the decay: θ ← θ − lr·λ·θ, not rescaled by √v̂
    assert params["w"][0] == pytest.approx(2.0 - 0.5 * 0.1 * 2.0)


def test_adam_state_round_trip_and_shape_check():
    params = {"w": np.ones((2, 2))}
    optimizer = Adam(params)
    optimizer.step(params, {"w": np.full((2, 2), 0.5)}, 0.1)
    state = {key: value.copy() for key, value in optimizer.state_dict().items()}
    other = Adam({"w": np.ones((2, 2))})
    other.load_state_dict(state, optimizer.step_count)
    np.testing.assert_array_equal(other.m["w"], optimizer.m["w"])
    np.testing.assert_array_equal(other.v["w"], optimizer.v["w"])
    assert other.step_count == 1
    with pytest.raises(ValueError, match=r"optimizer state m.w has shape \(2, 2\), the model needs \(3,\)"):
        Adam({"w": np.ones(3)}).load_state_dict(state, 1)


def test_noam_schedule():
    d_model, warmup = 64, 100
    peak = d_model**-0.5 * warmup**-0.5
    assert noam_lr(warmup, d_model, warmup) == pytest.approx(peak)
    # linear warmup, then inverse square root decay
    assert noam_lr(10, d_model, warmup) == pytest.approx(peak * 10 / warmup)
    assert noam_lr(400, d_model, warmup) == pytest.approx(peak * math.sqrt(warmup / 400))
    lrs = [noam_lr(step, d_model, warmup) for step in range(1, 1000)]
    assert int(np.argmax(lrs)) + 1 == warmup
    assert noam_lr(50, d_model, warmup, factor=2.0) == pytest.approx(2 * noam_lr(50, d_model, warmup))


def test_clip_by_global_norm():
    grads = {"a": np.array([3.0, 0.0]), "b": np.array([[0.0, 4.0]])}
    norm = clip_grad_norm(grads, max_norm=1.0)
    assert norm == pytest.approx(5.0)
    np.testing.assert_allclose(grads["a"], [0.6, 0.0])
    np.testing.assert_allclose(grads["b"], [[0.0, 0.8]])
    small = {"a": np.array([0.3, 0.4])}
    assert clip_grad_norm(small, max_norm=1.0) == pytest.approx(0.5)
    np.testing.assert_array_equal(small["a"], [0.3, 0.4])
    bad = {"a": np.array([np.nan, 1.0])}
    assert math.isnan(clip_grad_norm(bad, 1.0))


def test_gradient_check_catches_a_wrong_backward():
    """The checker itself: a backward with a missing term must fail, naming the tensor."""
    x = np.random.default_rng(0).standard_normal((3, 4))
    with pytest.raises(AssertionError, match=r"x: relative error"):
        check_layer(lambda x: (x * x, x), lambda dout, x: (dout * x,), {"x": x})  # 2·x·dout is right
    errors = check_layer(lambda x: (x * x, x), lambda dout, x: (2 * dout * x,), {"x": x})
    assert errors["x"] < 1e-8
