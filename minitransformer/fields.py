"""What every config dataclass checks the same way: its fields' types, and dicts whose
unknown keys are named.

    @dataclass
    class WidthConfig(Fields):
        width: int = 8
        window: int | None = None

        def __post_init__(self):
            self.check_types()                       # "WidthConfig.width must be int, got 'abc'"
            self.check_positive_ints("width")        # "WidthConfig.width must be a positive integer, got 0"

    WidthConfig.from_dict({"width": 4})               # {"widht": 4}: "unknown WidthConfig field(s): widht"

The model's ModelConfig (config.py), the recurrent models' RNNConfig (rnn/config.py) and
the run's TrainConfig (configs.py) are such dataclasses. A bad field raises one line, a
ConfigError (a ValueError) that names it as ``Class.field``; a config nested in another
is named by its path there (``TrainConfig.model.d_model``, see ``renamed``).
"""

import math
import types
import typing
from dataclasses import asdict, fields, replace


class ConfigError(ValueError):
    """A config name, file or value cannot be used; the message says which and why."""


def check_type(where, value, annotation):
    """``value`` must be of the annotated type (int, float, str, bool, a class, or X | None);
    a float takes an int, no number takes a bool, and a float must be finite."""
    allowed = typing.get_args(annotation) if isinstance(annotation, types.UnionType) else (annotation,)
    if value is None and type(None) in allowed:
        return
    for kind in allowed:
        if kind is bool and isinstance(value, bool):
            return
        if kind is int and isinstance(value, int) and not isinstance(value, bool):
            return
        if kind is float and isinstance(value, (int, float)) and not isinstance(value, bool):
            if not math.isfinite(value):
                raise ConfigError(f"{where} must be a finite number, got {value!r}")
            return
        if kind not in (bool, int, float, type(None)) and isinstance(kind, type) and isinstance(value, kind):
            return
    expected = " or ".join("None" if kind is type(None) else kind.__name__ for kind in allowed)
    raise ConfigError(f"{where} must be {expected}, got {value!r}")


def renamed(error, owners, path):
    """``error``'s message with each of ``owners`` (class names) read as ``path``: the words
    of a config that another holds ("ModelConfig.d_model" -> "TrainConfig.model.d_model")."""
    message = str(error)
    for owner in owners:
        message = message.replace(f"unknown {owner} ", f"unknown {path} ").replace(f"{owner}.", f"{path}.")
    return ConfigError(message)


class Fields:
    """The checks and the dict round trip that the config dataclasses share."""

    def check_types(self):
        for field in fields(self):
            check_type(f"{type(self).__name__}.{field.name}", getattr(self, field.name), field.type)

    def check_positive_ints(self, *names):
        for name in names:
            value = getattr(self, name)
            if value is not None and (not isinstance(value, int) or isinstance(value, bool) or value <= 0):
                raise ConfigError(f"{type(self).__name__}.{name} must be a positive integer, got {value!r}")

    def check_fraction(self, *names):
        """Each of ``names`` lies in [0, 1) (a dropout, a smoothing ε, Adam's β)."""
        for name in names:
            if not 0.0 <= getattr(self, name) < 1.0:
                raise ConfigError(f"{type(self).__name__}.{name} must lie in [0, 1), got {getattr(self, name)!r}")

    def to_dict(self):
        return asdict(self)

    @classmethod
    def check_known(cls, values):
        known = {field.name for field in fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ConfigError(f"unknown {cls.__name__} field(s): {', '.join(unknown)}")

    @classmethod
    def from_dict(cls, values):
        """Build from a dict (a saved config); an unknown key is an error that names it."""
        cls.check_known(values)
        return cls(**values)

    def updated(self, values):
        """This config with the fields of ``values`` (a dict) changed; unknown keys named."""
        self.check_known(values)
        return replace(self, **values)
