"""The NumPy backend: the reference of every operation, unchanged. Always available."""

import numpy as xp  # noqa: F401  (the array module this backend's tensors live in)

from ..layers.attention import attention_backward, attention_forward  # noqa: F401
from .kernels import Kernels

name = "numpy"
kernels = Kernels()


def unavailable_reason():
    return None
