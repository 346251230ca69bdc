"""Gradient checks (float64 finite differences) for the vision building blocks:
convolution (stride, padding, dilation, groups), average and max pooling (overlapping
windows and ties), global pooling, BatchNorm in train and eval mode, and the gates."""

import numpy as np
import pytest

from minitransformer.gradcheck import check_layer
from minitransformer.vision.batchnorm import batchnorm_backward, batchnorm_forward
from minitransformer.vision.conv import conv2d_backward, conv2d_forward
from minitransformer.vision.gate import (
    gate_backward,
    gate_forward,
    sigmoid_backward,
    sigmoid_forward,
    softmax_backward,
    softmax_forward,
)
from minitransformer.vision.global_pool import (
    global_avg_pool_backward,
    global_avg_pool_forward,
    global_max_pool_backward,
    global_max_pool_forward,
    max_pool_backward,
    max_pool_forward,
    mean_pool_backward,
    mean_pool_forward,
)
from minitransformer.vision.pool import (
    adaptive_pool_matrix,
    avgpool2d_backward,
    avgpool2d_forward,
    maxpool2d_backward,
    maxpool2d_forward,
)

CONV_CASES = [
    # (C, F, kernel, stride, padding, dilation, groups, H, W)
    (3, 4, (3, 3), 1, 1, 1, 1, 6, 5),
    (4, 6, (3, 2), (2, 1), (1, 0), 1, 2, 7, 6),
    (2, 3, (3, 3), 1, 2, 2, 1, 6, 6),
    (4, 4, (3, 3), 2, 1, (2, 1), 4, 8, 7),  # depthwise, strided and dilated
    (6, 3, (1, 1), 1, 0, 1, 3, 3, 4),
]


@pytest.mark.parametrize("case", CONV_CASES, ids=lambda c: f"C{c[0]}F{c[1]}k{c[2]}s{c[3]}p{c[4]}d{c[5]}g{c[6]}")
def test_conv2d_gradients(case):
    channels, filters, kernel, stride, padding, dilation, groups, height, width = case
    rng = np.random.default_rng(0)
    inputs = {
        "x": rng.standard_normal((2, channels, height, width)),
        "weight": rng.standard_normal((filters, channels // groups, *kernel)),
        "bias": rng.standard_normal(filters),
    }
    check_layer(
        lambda x, w, b: conv2d_forward(x, w, b, stride, padding, dilation, groups),
        conv2d_backward,
        inputs,
    )


def test_conv2d_matches_a_direct_loop():
    """The im2col product against the defining sum, term by term."""
    rng = np.random.default_rng(1)
    x = rng.standard_normal((2, 4, 7, 6))
    weight = rng.standard_normal((6, 2, 3, 2))
    bias = rng.standard_normal(6)
    stride, padding, dilation, groups = (2, 1), (1, 2), (2, 1), 2
    y, _ = conv2d_forward(x, weight, bias, stride, padding, dilation, groups)
    padded = np.pad(x, ((0, 0), (0, 0), (1, 1), (2, 2)))
    expected = np.zeros_like(y)
    for b in range(2):
        for f in range(6):
            group = f // 3
            for i in range(y.shape[2]):
                for j in range(y.shape[3]):
                    total = bias[f]
                    for c in range(2):
                        for p in range(3):
                            for q in range(2):
                                total += weight[f, c, p, q] * padded[b, group * 2 + c, i * 2 + p * 2, j + q]
                    expected[b, f, i, j] = total
    np.testing.assert_allclose(y, expected, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("kernel,stride,padding", [(2, 2, 0), (3, 2, 1), (3, 1, 1), ((2, 3), (1, 2), (1, 1))])
def test_avgpool_gradients(kernel, stride, padding):
    x = np.random.default_rng(2).standard_normal((2, 3, 6, 7))
    check_layer(lambda x: avgpool2d_forward(x, kernel, stride, padding), avgpool2d_backward, {"x": x})


@pytest.mark.parametrize("kernel,stride,padding", [(2, 2, 0), (3, 2, 1), (3, 1, 1)])
def test_maxpool_gradients(kernel, stride, padding):
    # distinct values spaced by more than 2h, so no perturbation changes an argmax
    x = np.random.default_rng(3).permutation(2 * 3 * 6 * 7).reshape(2, 3, 6, 7) * 1e-3
    check_layer(lambda x: maxpool2d_forward(x, kernel, stride, padding), maxpool2d_backward, {"x": x})


def test_maxpool_ties_send_the_gradient_to_the_first_maximum():
    """A tie has no derivative; the gradient goes to the first maximum in row-major order
    (PyTorch's choice, checked against its fixture in test_vision_torch_agreement.py), each
    window's gradient arrives whole, and overlapping windows add up at a shared maximum."""
    x = np.array([[[[1.0, 3.0, 3.0, 0.0], [3.0, 2.0, 1.0, 3.0], [0.0, 0.0, 5.0, 5.0], [0.0, 0.0, 5.0, 5.0]]]])
    y, cache = maxpool2d_forward(x, 2, 2)
    np.testing.assert_array_equal(y, [[[[3.0, 3.0], [0.0, 5.0]]]])
    dy = np.array([[[[1.0, 2.0], [3.0, 4.0]]]])
    dx = maxpool2d_backward(dy, cache)
    expected = np.zeros_like(x)
    expected[0, 0, 0, 1] = 1.0  # first of the three 3s of the top-left window
    expected[0, 0, 0, 2] = 2.0  # first of the two 3s of the top-right window
    expected[0, 0, 2, 0] = 3.0  # a window of zeros: its first element
    expected[0, 0, 2, 2] = 4.0  # first of four 5s
    np.testing.assert_array_equal(dx, expected)
    # overlapping windows (stride 1) that share one maximum: its gradient is their sum
    y, cache = maxpool2d_forward(x, 2, 1)
    dx = maxpool2d_backward(np.ones_like(y), cache)
    assert dx.sum() == y.size
    assert dx[0, 0, 2, 2] == 4.0  # the 5 at (2, 2) is the first maximum of four windows


def test_maxpool_tie_gradient_is_a_one_sided_derivative():
    """At a tie the gradient given is the derivative from the side where the chosen element
    stays the maximum: raising it by h raises the output by h, lowering the others changes
    nothing."""
    x = np.zeros((1, 1, 2, 2))
    _, cache = maxpool2d_forward(x, 2)
    dx = maxpool2d_backward(np.ones((1, 1, 1, 1)), cache)
    h = 1e-6
    direction = dx / np.abs(dx).sum()
    up, _ = maxpool2d_forward(x + h * direction, 2)
    assert abs(up[0, 0, 0, 0] / h - (dx * direction).sum()) < 1e-9


def test_global_pools_and_axis_pools_gradients():
    rng = np.random.default_rng(4)
    x = rng.permutation(2 * 3 * 4 * 5).reshape(2, 3, 4, 5) * 1e-3
    check_layer(global_avg_pool_forward, global_avg_pool_backward, {"x": x.copy()})
    check_layer(global_max_pool_forward, global_max_pool_backward, {"x": x.copy()})
    for axes in (1, (0, 2), (1, 3)):
        check_layer(lambda x: mean_pool_forward(x, axes), mean_pool_backward, {"x": x.copy()})
        check_layer(lambda x: max_pool_forward(x, axes), max_pool_backward, {"x": x.copy()})


def test_adaptive_pool_matrix_averages_bins():
    matrix = adaptive_pool_matrix(5, 4, 3)
    assert matrix.shape == (9, 20)
    np.testing.assert_allclose(matrix.sum(axis=1), 1.0)
    x = np.arange(20.0).reshape(5, 4)
    # row bins of 5 into 3: [0, 2), [1, 4), [3, 5); column bins of 4 into 3: [0, 2), [1, 3), [2, 4)
    assert np.isclose(matrix[0] @ x.ravel(), x[0:2, 0:2].mean())
    assert np.isclose(matrix[4] @ x.ravel(), x[1:4, 1:3].mean())
    np.testing.assert_allclose(adaptive_pool_matrix(3, 3, 3), np.eye(9))


@pytest.mark.parametrize("shape", [(6, 3), (4, 3, 2, 3)])
def test_batchnorm_train_gradients(shape):
    rng = np.random.default_rng(5)
    channels = shape[1]
    running_mean, running_var = np.zeros(channels), np.ones(channels)
    inputs = {
        "x": rng.standard_normal(shape) * 2 + 1,
        "gamma": rng.standard_normal(channels),
        "beta": rng.standard_normal(channels),
    }
    check_layer(
        lambda x, g, b: batchnorm_forward(x, g, b, running_mean.copy(), running_var.copy(), True),
        batchnorm_backward,
        inputs,
    )


def test_batchnorm_eval_gradients_and_running_statistics():
    rng = np.random.default_rng(6)
    x = rng.standard_normal((8, 3, 2, 2)) * 3 + 2
    running_mean, running_var = np.zeros(3), np.ones(3)
    batchnorm_forward(x, np.ones(3), np.zeros(3), running_mean, running_var, True, momentum=0.5)
    np.testing.assert_allclose(running_mean, 0.5 * x.mean(axis=(0, 2, 3)))
    np.testing.assert_allclose(running_var, 0.5 + 0.5 * x.var(axis=(0, 2, 3), ddof=1))
    inputs = {"x": x, "gamma": rng.standard_normal(3), "beta": rng.standard_normal(3)}
    check_layer(
        lambda x, g, b: batchnorm_forward(x, g, b, running_mean, running_var, False),
        batchnorm_backward,
        inputs,
    )
    # eval mode leaves the running statistics alone and treats each image on its own
    before = running_mean.copy()
    y_all, _ = batchnorm_forward(x, np.ones(3), np.zeros(3), running_mean, running_var, False)
    y_one, _ = batchnorm_forward(x[:1], np.ones(3), np.zeros(3), running_mean, running_var, False)
    np.testing.assert_array_equal(running_mean, before)
    np.testing.assert_allclose(y_all[:1], y_one, rtol=1e-12)


def test_gates_gradients():
    rng = np.random.default_rng(7)
    check_layer(sigmoid_forward, sigmoid_backward, {"s": rng.standard_normal((3, 4)) * 3})
    check_layer(lambda s: softmax_forward(s, 1), softmax_backward, {"s": rng.standard_normal((2, 3, 4))})
    for weight_shape in ((2, 3, 1, 1), (2, 1, 4, 5), (2, 3, 4, 5)):
        inputs = {"x": rng.standard_normal((2, 3, 4, 5)), "weights": rng.standard_normal(weight_shape)}
        check_layer(gate_forward, gate_backward, inputs)


def test_sigmoid_does_not_overflow():
    a, _ = sigmoid_forward(np.array([-1000.0, 0.0, 1000.0]))
    np.testing.assert_array_equal(a, [0.0, 0.5, 1.0])


@pytest.mark.parametrize(
    "call,parameter",
    [
        (lambda: conv2d_forward(np.zeros((1, 4, 5, 5)), np.zeros((6, 2, 3, 3)), groups=3), "groups"),
        (lambda: conv2d_forward(np.zeros((1, 4, 5, 5)), np.zeros((6, 4, 3, 3)), stride=0), "stride"),
        (lambda: conv2d_forward(np.zeros((1, 4, 5, 5)), np.zeros((6, 4, 3, 3)), dilation=0), "dilation"),
        (lambda: conv2d_forward(np.zeros((1, 4, 5, 5)), np.zeros((6, 4, 3, 3)), padding=-1), "padding"),
        (lambda: maxpool2d_forward(np.zeros((1, 1, 4, 4)), 2, padding=2), "padding"),
        (lambda: adaptive_pool_matrix(4, 4, 5), "pooled size"),
        (lambda: batchnorm_forward(np.zeros((1, 3)), *[np.ones(3)] * 4, True), "more than one value"),
    ],
)
def test_bad_parameters_raise_a_value_error_naming_them(call, parameter):
    with pytest.raises(ValueError, match=parameter):
        call()
