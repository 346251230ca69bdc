"""The ten attention modules of the notes, one file each, behind one table.

Every module maps a feature map to one of the same shape, x (B, C, H, W) -> y (B, C, H, W),
with the interface

    params      = init(rng, channels, dtype)
    y, cache    = forward(x, params, mode)         mode: blocks.Mode(training, backend)
    dx, grads   = backward(dy, cache)              grads under the keys of params
    weights     = attention_map(cache)             what g(x) produced, for inspection

so the CNN (vision/cnn.py) can insert any of them at the same place. ``kind`` says how the
map is scored (vision/train.py): "spatial" maps (B, H, W) against the object masks with the
pointing game and IoU, "channel" weights (B, C) per class ("branch" for SK: its branch
weights, shown per channel like the others).
"""

from typing import Callable, NamedTuple

from . import anl, bam, cbam, danet, eca, gc, gsop, non_local, se, sk


class AttentionModule(NamedTuple):
    name: str
    paper: str
    kind: str  # "channel", "spatial" or "branch"
    init: Callable
    forward: Callable
    backward: Callable
    attention_map: Callable
    channel_weights: Callable  # (B, C) channel weights, or None where the module has none
    param_count: Callable  # channels -> the number of trained parameters, from the docstring's formula


def _module(name, file, paper, channel_weights=None):
    return AttentionModule(
        name, paper, file.KIND, getattr(file, f"{name}_init"), getattr(file, f"{name}_forward"),
        getattr(file, f"{name}_backward"), file.attention_map,
        channel_weights or (file.attention_map if file.KIND == "channel" else None), file.param_count,
    )  # fmt: skip


MODULES = {
    module.name: module
    for module in (
        _module("se", se, "Hu et al., CVPR 2018"),
        _module("sk", sk, "Li et al., CVPR 2019", sk.channel_weights),
        _module("eca", eca, "Wang et al., CVPR 2020"),
        _module("cbam", cbam, "Woo et al., ECCV 2018", cbam.channel_weights),
        _module("bam", bam, "Park et al., BMVC 2018"),
        _module("non_local", non_local, "Wang et al., CVPR 2018"),
        _module("danet", danet, "Fu et al., CVPR 2019"),
        _module("anl", anl, "Zhu et al., ICCV 2019"),
        _module("gc", gc, "Cao et al., ICCV 2019 workshops"),
        _module("gsop", gsop, "Gao et al., CVPR 2019"),
    )
}


def get_module(name):
    """The AttentionModule called ``name`` (ValueError listing the names otherwise)."""
    if name not in MODULES:
        raise ValueError(f"unknown attention module {name!r}; choose one of {', '.join(MODULES)}")
    return MODULES[name]
