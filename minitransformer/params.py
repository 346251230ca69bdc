"""Parameters and gradients are flat dicts of named arrays under the same keys.

    params["encoder.layers.0.self_attn.w_q"]  # (D, D)
    grads ["encoder.layers.0.self_attn.w_q"]  # (D, D), same key, same shape

A layer sees only its own part of the tree: ``subtree(params, "encoder.layers.0")`` gives
{"self_attn.w_q": …, …}; the gradients it returns are put back with ``add_into``.
"""


def subtree(params, prefix):
    """The entries under ``prefix``, with ``prefix.`` removed from their keys."""
    start = prefix + "."
    return {key[len(start) :]: value for key, value in params.items() if key.startswith(start)}


def add_into(grads, prefix, layer_grads):
    """Add a layer's gradients (a possibly nested dict) into ``grads`` under ``prefix``."""
    for key, value in layer_grads.items():
        full_key = f"{prefix}.{key}" if prefix else key
        if isinstance(value, dict):
            add_into(grads, full_key, value)
        elif full_key in grads:
            grads[full_key] += value
        else:
            grads[full_key] = value


def count_parameters(params):
    """The number of scalar parameters (a tied matrix counts once: it is one array)."""
    return int(sum(value.size for value in params.values()))


def checked_params(params, shapes, dtype):
    """Loaded ``params`` against the {key: shape} a config needs -> the arrays in ``dtype``;
    a ValueError naming what is missing, unexpected or of the wrong shape."""
    import numpy as np

    missing = sorted(set(shapes) - set(params))
    extra = sorted(set(params) - set(shapes))
    if missing or extra:
        raise ValueError(
            "parameters do not match the config: "
            + (f"missing {', '.join(missing[:5])}{' …' if len(missing) > 5 else ''}; " if missing else "")
            + (f"unexpected {', '.join(extra[:5])}{' …' if len(extra) > 5 else ''}" if extra else "")
        )
    for key, shape in shapes.items():
        if tuple(params[key].shape) != shape:
            raise ValueError(f"parameter {key} has shape {tuple(params[key].shape)}, the config needs {shape}")
    return {key: np.asarray(value, dtype=dtype) for key, value in params.items()}


def params_for(config, seed, params, param_shapes, init_params):
    """The parameters a builder starts from: a fresh ``init_params(config, seed)`` when
    ``params`` is None, else the loaded ``params`` checked against ``param_shapes(config)``
    ({key: (shape, kind)}) and cast to config.dtype."""
    if params is None:
        return init_params(config, seed)
    shapes = {key: shape for key, (shape, _) in param_shapes(config).items()}
    return checked_params(params, shapes, config.dtype)
