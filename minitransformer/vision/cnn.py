"""The small CNN of chapter 14, with room for one attention module.

Sizes: B batch, C channels, H × W the map, K classes.

    stage 1   conv3×3 (3 → 8)  · BN · ReLU     32×32    max-pool 2 → 16×16
    stage 2   conv3×3 (8 → 32)  · BN · ReLU    16×16
    [attention module on (B, 32, 16, 16)]               ← the same place for every module
              max-pool 2 → 8×8
    stage 3   conv3×3 (32 → 32) · BN · ReLU     8×8
    head      global average pool → linear (32 → K)

The module sits where the map still has 16×16 positions, so a spatial map can be compared
with the object's mask, and the channels already mean something. One builder,
make_cnn(config, rng), and one train step, train_step(...), which `make vision`
(vision/train.py) and the tests call.
"""

from dataclasses import dataclass
from typing import NamedTuple, Optional

import numpy as np

from ..layers.linear import linear_backward, linear_forward
from ..layers.loss import cross_entropy_backward, cross_entropy_forward
from .blocks import Mode, conv_bn_relu_backward, conv_bn_relu_forward, conv_bn_relu_init, linear_init, prefixed, sub
from .global_pool import global_avg_pool_backward, global_avg_pool_forward
from .modules import get_module
from .pool import maxpool2d_backward, maxpool2d_forward


@dataclass
class VisionConfig:
    in_channels: int = 3  # RGB
    n_classes: int = 6  # the classes of vision/shapes.py
    widths: tuple = (8, 32, 32)  # channels of the three stages
    module: Optional[str] = None  # the attention module after stage 2 (a name of vision/modules), or None
    dtype: str = "float32"

    def __post_init__(self):
        if len(self.widths) != 3 or min(self.widths) < 1:
            raise ValueError(f"widths must be three positive channel counts, got {self.widths}")
        if self.module is not None:
            get_module(self.module)  # a ValueError naming the choices


def make_cnn(config, rng):
    """The parameters of the CNN (and its module), one flat dict. The backbone draws from
    ``rng`` first and the module from its own generator, so every variant built with the
    same seed starts from the same backbone."""
    dtype = np.dtype(config.dtype)
    w1, w2, w3 = config.widths
    params = {}
    params.update(prefixed(conv_bn_relu_init(rng, config.in_channels, w1, 3, dtype=dtype), "stage1"))
    params.update(prefixed(conv_bn_relu_init(rng, w1, w2, 3, dtype=dtype), "stage2"))
    params.update(prefixed(conv_bn_relu_init(rng, w2, w3, 3, dtype=dtype), "stage3"))
    params.update(prefixed(linear_init(rng, w3, config.n_classes, dtype, relu=False), "head"))
    if config.module is not None:
        module_rng = np.random.default_rng(rng.integers(2**63))
        params.update(prefixed(get_module(config.module).init(module_rng, w2, dtype), "attention"))
    return params


class CNNCache(NamedTuple):
    stage1: object
    pool1: object
    stage2: object
    attention: object  # the module's cache, or None
    pool2: object
    stage3: object
    gap: object
    head: object


def cnn_forward(images, params, config, mode):
    """images (B, 3, 32, 32) -> logits (B, K), cache."""
    x, stage1 = conv_bn_relu_forward(images, sub(params, "stage1"), mode, padding=1)  # (B, 8, 32, 32)
    x, pool1 = maxpool2d_forward(x, 2)  # (B, 8, 16, 16)
    x, stage2 = conv_bn_relu_forward(x, sub(params, "stage2"), mode, padding=1)  # (B, 32, 16, 16)
    attention = None
    if config.module is not None:
        x, attention = get_module(config.module).forward(x, sub(params, "attention"), mode)  # (B, 32, 16, 16)
    x, pool2 = maxpool2d_forward(x, 2)  # (B, 32, 8, 8)
    x, stage3 = conv_bn_relu_forward(x, sub(params, "stage3"), mode, padding=1)  # (B, 32, 8, 8)
    z, gap = global_avg_pool_forward(x)  # (B, 32)
    logits, head = linear_forward(z, params["head.weight"], params["head.bias"])  # (B, K)
    return logits, CNNCache(stage1, pool1, stage2, attention, pool2, stage3, gap, head)


def cnn_backward(dlogits, cache, config):
    """dlogits (B, K) -> grads under the keys of make_cnn's parameters."""
    grads = {}
    dz, grads["head.weight"], grads["head.bias"] = linear_backward(dlogits, cache.head)
    dx = global_avg_pool_backward(dz, cache.gap)  # (B, 32, 8, 8)
    dx, stage_grads = conv_bn_relu_backward(dx, cache.stage3)
    grads.update(prefixed(stage_grads, "stage3"))
    dx = maxpool2d_backward(dx, cache.pool2)  # (B, 32, 16, 16)
    if cache.attention is not None:
        dx, module_grads = get_module(config.module).backward(dx, cache.attention)
        grads.update(prefixed(module_grads, "attention"))
    dx, stage_grads = conv_bn_relu_backward(dx, cache.stage2)
    grads.update(prefixed(stage_grads, "stage2"))
    dx = maxpool2d_backward(dx, cache.pool1)
    _, stage_grads = conv_bn_relu_backward(dx, cache.stage1)  # the images need no gradient
    grads.update(prefixed(stage_grads, "stage1"))
    return grads


def loss_forward(logits, labels):
    """logits (B, K), labels (B,) -> mean cross-entropy, cache (layers/loss.py with one position)."""
    return cross_entropy_forward(logits[:, None, :], labels[:, None], pad_id=-1)


def loss_backward(cache):
    """-> dlogits (B, K)."""
    return cross_entropy_backward(cache)[:, 0, :]


def images_to_input(images, dtype):
    """uint8 (B, 3, H, W) -> float in [−1, 1]."""
    return (images.astype(dtype) / np.asarray(127.5, dtype)) - np.asarray(1.0, dtype)


def train_step(params, optimizer, images, labels, config, backend, lr):
    """One step: forward in training mode, loss, backward, Adam update. Returns the loss."""
    mode = Mode(True, backend)
    logits, cache = cnn_forward(images_to_input(images, np.dtype(config.dtype)), params, config, mode)
    loss, loss_cache = loss_forward(logits, labels)
    grads = cnn_backward(loss_backward(loss_cache).astype(logits.dtype), cache, config)
    optimizer.step({key: params[key] for key in grads}, grads, lr)
    return float(loss)


def predict(params, images, config, backend, collect=None, batch_size=250):
    """Eval mode over ``images`` in batches -> (predicted classes (N,), [collect(module cache)
    per batch]). ``collect`` keeps what is wanted of a cache (a map), so the caches
    themselves (a non-local block's is (B, N, N)) do not pile up."""
    mode = Mode(False, backend)
    predictions, collected = [], []
    for start in range(0, len(images), batch_size):
        logits, cache = cnn_forward(images_to_input(images[start : start + batch_size], np.dtype(config.dtype)),
                                    params, config, mode)  # fmt: skip
        predictions.append(logits.argmax(axis=1))
        if collect is not None:
            collected.append(collect(cache.attention))
    return np.concatenate(predictions), collected
