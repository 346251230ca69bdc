"""The ten attention modules: finite-difference checks of every backward (float64), the
identities the issue names, the parameter counts of the docstrings, and the pixel-attention
modules on the Cython backend against the NumPy reference."""

import numpy as np
import pytest

from minitransformer import backends
from minitransformer.gradcheck import assert_errors_below, numerical_gradient, rel_error
from minitransformer.vision.blocks import Mode, count_parameters, trainable
from minitransformer.vision.modules import MODULES, get_module
from minitransformer.vision.modules.anl import anl_forward
from minitransformer.vision.modules.non_local import non_local_backward, non_local_forward
from minitransformer.vision.pixel_attention import pixel_attention_backward, pixel_attention_forward

NUMPY = Mode(True, backends.get("numpy"))


def module_inputs(name, channels=8, size=4, batch=3, seed=0):
    """A float64 input and parameters in which nothing that starts at zero is zero (so that
    every gradient is exercised)."""
    rng = np.random.default_rng(seed)
    params = get_module(name).init(np.random.default_rng(seed + 1), channels, np.float64)
    for key in trainable(params):
        if not np.any(params[key]):
            params[key][...] = 0.5 * rng.standard_normal(params[key].shape)
    x = rng.standard_normal((batch, channels, size, size))
    return x, params


@pytest.mark.parametrize("name", list(MODULES))
def test_module_gradients(name):
    module = get_module(name)
    x, params = module_inputs(name)
    forward = lambda: module.forward(x, params, NUMPY)[0]  # noqa: E731
    y = forward()
    dy = np.random.default_rng(9).standard_normal(y.shape)
    _, cache = module.forward(x, params, NUMPY)
    dx, grads = module.backward(dy, cache)
    assert set(grads) == set(trainable(params)), f"{name}: gradients for {sorted(grads)}, params {sorted(trainable(params))}"

    def loss():
        return float(np.sum(forward() * dy))

    errors = {"x": rel_error(dx, numerical_gradient(loss, x))}
    for key in trainable(params):
        errors[key] = rel_error(grads[key], numerical_gradient(loss, params[key]))
    assert_errors_below({f"{name}: {key}": err for key, err in errors.items()}, 1e-6)


@pytest.mark.parametrize("name", list(MODULES))
@pytest.mark.parametrize("channels", [8, 32])
def test_parameter_count_is_the_docstrings_formula(name, channels):
    module = get_module(name)
    params = module.init(np.random.default_rng(0), channels, np.float32)
    assert count_parameters(params) == module.param_count(channels)


@pytest.mark.parametrize("name", list(MODULES))
def test_attention_maps_have_the_documented_shape(name):
    module = get_module(name)
    x, params = module_inputs(name, channels=8, size=5)
    y, cache = module.forward(x, params, NUMPY)
    assert y.shape == x.shape
    weights = module.attention_map(cache)
    if module.kind == "spatial":
        assert weights.shape == (3, 5, 5)
    elif module.kind == "channel":
        assert weights.shape == (3, 8)
        assert np.all((weights > 0) & (weights < 1))  # sigmoid gates
    else:
        assert weights.shape == (3, 2, 8)
        np.testing.assert_allclose(weights.sum(axis=1), 1.0, rtol=1e-12)  # a softmax over branches
    if module.channel_weights is not None:
        assert module.channel_weights(cache).shape == (3, 8)


@pytest.mark.parametrize("name", ["non_local", "danet", "anl", "gc"])
def test_softmax_maps_are_distributions_over_positions(name):
    module = get_module(name)
    x, params = module_inputs(name, size=6)
    _, cache = module.forward(x, params, NUMPY)
    np.testing.assert_allclose(module.attention_map(cache).sum(axis=(1, 2)), 1.0, rtol=1e-12)


def test_se_with_its_gate_forced_to_one_is_the_identity():
    x, params = module_inputs("se")
    params["fc2.weight"][...] = 0.0
    params["fc2.bias"][...] = 50.0  # σ(50) = 1 − 2e-22, which is 1.0 in float64
    y, cache = get_module("se").forward(x, params, NUMPY)
    assert np.all(get_module("se").attention_map(cache) == 1.0)
    np.testing.assert_allclose(y, x, rtol=1e-15, atol=0)


def test_non_local_with_a_zero_output_projection_is_the_identity():
    x, params = module_inputs("non_local")
    params["out.weight"][...] = 0.0
    params["out.bias"][...] = 0.0
    y, _ = non_local_forward(x, params, NUMPY)
    np.testing.assert_allclose(y, x, rtol=1e-15, atol=0)
    # and a freshly initialized block is that identity
    fresh = get_module("non_local").init(np.random.default_rng(0), 8, np.float64)
    np.testing.assert_allclose(non_local_forward(x, fresh, NUMPY)[0], x, rtol=1e-15, atol=0)


def test_anl_keeping_every_position_as_a_key_is_non_local():
    x, params = module_inputs("anl", size=6)
    y_anl, cache_anl = anl_forward(x, params, NUMPY, sizes=(6,))  # 6×6 cells of one pixel: P = I
    y_nl, cache_nl = non_local_forward(x, params, NUMPY)
    np.testing.assert_allclose(y_anl, y_nl, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(cache_anl.probs, cache_nl.probs, rtol=1e-12, atol=1e-14)
    dy = np.random.default_rng(3).standard_normal(x.shape)
    dx_anl, grads_anl = non_local_backward(dy, cache_anl)
    dx_nl, grads_nl = non_local_backward(dy, cache_nl)
    np.testing.assert_allclose(dx_anl, dx_nl, rtol=1e-12, atol=1e-12)
    for key in grads_nl:
        np.testing.assert_allclose(grads_anl[key], grads_nl[key], rtol=1e-10, atol=1e-12, err_msg=key)
    # with the paper's pyramid the keys are fewer than the positions
    _, cache = anl_forward(np.zeros((1, 8, 16, 16)), params, NUMPY)
    assert cache.probs.shape == (1, 256, 1 + 9 + 36 + 64)


@pytest.mark.parametrize("widths", [(3, 3), (2, 6), (6, 2), (1, 5)])
def test_pixel_attention_pads_widths_without_changing_the_scores(widths):
    key_width, value_width = widths
    rng = np.random.default_rng(4)
    q, k = rng.standard_normal((2, 5, key_width)), rng.standard_normal((2, 7, key_width))
    v = rng.standard_normal((2, 7, value_width))
    out, probs, cache = pixel_attention_forward(q, k, v, backends.get("numpy"))
    scores = q @ k.transpose(0, 2, 1) / np.sqrt(key_width)
    expected = np.exp(scores - scores.max(-1, keepdims=True))
    expected /= expected.sum(-1, keepdims=True)
    np.testing.assert_allclose(probs, expected, rtol=1e-12)
    np.testing.assert_allclose(out, expected @ v, rtol=1e-12)
    dout = rng.standard_normal(out.shape)
    dq, dk, dv = pixel_attention_backward(dout, cache)
    loss = lambda: float(np.sum(pixel_attention_forward(q, k, v, backends.get("numpy"))[0] * dout))  # noqa: E731
    errors = {name: rel_error(grad, numerical_gradient(loss, array)) for name, grad, array in
              (("q", dq, q), ("k", dk, k), ("v", dv, v))}  # fmt: skip
    assert_errors_below(errors, 1e-7)


@pytest.mark.parametrize("name", ["non_local", "danet", "anl", "gc"])
@pytest.mark.parametrize("dtype,tol", [(np.float64, 1e-10), (np.float32, 2e-4)])
def test_pixel_attention_modules_run_on_the_cython_backend(name, dtype, tol):
    try:
        cython = backends.get("cython")
    except backends.BackendUnavailable as error:
        pytest.skip(str(error))
    module = get_module(name)
    x, params = module_inputs(name, size=8)
    x = x.astype(dtype)
    params = {key: value.astype(dtype) for key, value in params.items()}
    y_numpy, cache_numpy = module.forward(x, {k: v.copy() for k, v in params.items()}, NUMPY)
    y_cython, cache_cython = module.forward(x, {k: v.copy() for k, v in params.items()}, Mode(True, cython))
    assert y_cython.dtype == dtype
    np.testing.assert_allclose(y_cython, y_numpy, rtol=tol, atol=tol)
    dy = np.random.default_rng(5).standard_normal(x.shape).astype(dtype)
    dx_numpy, grads_numpy = module.backward(dy, cache_numpy)
    dx_cython, grads_cython = module.backward(dy, cache_cython)
    np.testing.assert_allclose(dx_cython, dx_numpy, rtol=tol, atol=tol)
    for key in grads_numpy:
        scale = max(1.0, float(np.abs(grads_numpy[key]).max()))
        np.testing.assert_allclose(grads_cython[key], grads_numpy[key], rtol=tol, atol=tol * scale, err_msg=key)


def test_unknown_module_names_the_choices():
    with pytest.raises(ValueError, match="unknown attention module 'sse'.*se, sk, eca"):
        get_module("sse")


class _DeviceArray(np.ndarray):
    """Stands for an array on another device (a CuPy array): array_module and to_numpy
    recognize it by its module name, and .get() copies it back to the host."""

    __module__ = "cupy._fake_device"

    def get(self):
        return np.asarray(self).view(np.ndarray).copy()


class _DeviceBackend:
    """A backend whose tensors live "on a device": its attention core refuses host arrays,
    so it proves that pixel_attention copies q, k, v (and dout) there and the results back."""

    name = "fake-device"

    class xp:  # noqa: N801  (the array module of this backend)
        @staticmethod
        def asarray(array):
            return np.ascontiguousarray(array).view(_DeviceArray)

    calls = 0

    def attention_forward(self, q, k, v, mask):
        assert all(isinstance(t, _DeviceArray) for t in (q, k, v)), "the core was handed host arrays"
        self.calls += 1
        out, probs = backends.get("numpy").attention_forward(*(np.asarray(t).view(np.ndarray) for t in (q, k, v)), mask)
        return out.view(_DeviceArray), probs.view(_DeviceArray)

    def attention_backward(self, dout, q, k, v, probs):
        assert all(isinstance(t, _DeviceArray) for t in (dout, q, k, v, probs)), "the core was handed host arrays"
        self.calls += 1
        host = (np.asarray(t).view(np.ndarray) for t in (dout, q, k, v, probs))
        return tuple(g.view(_DeviceArray) for g in backends.get("numpy").attention_backward(*host))


@pytest.mark.parametrize("name", ["non_local", "danet", "anl", "gc"])
def test_pixel_attention_modules_copy_to_and_from_a_device_backend(name):
    """The path a CuPy backend takes (no GPU is needed to check the copies)."""
    module, device = get_module(name), _DeviceBackend()
    x, params = module_inputs(name, size=6)
    y_host, cache_host = module.forward(x, params, NUMPY)
    y_device, cache_device = module.forward(x, params, Mode(True, device))
    assert type(y_device) is np.ndarray and type(module.attention_map(cache_device)) is np.ndarray
    np.testing.assert_allclose(y_device, y_host, rtol=1e-12, atol=1e-12)
    dy = np.random.default_rng(6).standard_normal(x.shape)
    dx_host, grads_host = module.backward(dy, cache_host)
    dx_device, grads_device = module.backward(dy, cache_device)
    assert type(dx_device) is np.ndarray and device.calls == 2
    np.testing.assert_allclose(dx_device, dx_host, rtol=1e-12, atol=1e-12)
    for key in grads_host:
        assert type(grads_device[key]) is np.ndarray, key
        np.testing.assert_allclose(grads_device[key], grads_host[key], rtol=1e-10, atol=1e-12, err_msg=key)
