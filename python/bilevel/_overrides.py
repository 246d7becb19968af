"""Python values as the config overrides the command line takes (``key.path=value``, Hydra's grammar)."""

import math


def format_value(value):
    """The override text of a Python value: true/false, null, [a,b], numbers, strings as they are."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return "null"
    if isinstance(value, (list, tuple)):
        return "[" + ",".join(format_value(v) for v in value) + "]"
    if isinstance(value, float):
        if math.isinf(value):
            return ".inf" if value > 0 else "-.inf"
        return repr(value)
    return str(value)


def to_overrides(overrides=(), options=None):
    """``overrides`` (strings ``key.path=value``) followed by ``options`` (keyword arguments).

    A keyword's ``__`` stands for a dot (``train__epochs=3``); a dict value is a group of keys
    (``train={"epochs": 3, "batch_size": 50}``).
    """
    out = []
    for o in overrides:
        if not isinstance(o, str):
            raise TypeError(f"override {o!r}: expected a string 'key.path=value'")
        out.append(o)

    def add(prefix, value):
        if isinstance(value, dict):
            for k, v in value.items():
                add(f"{prefix}.{k}", v)
        else:
            out.append(f"{prefix}={format_value(value)}")

    for key, value in (options or {}).items():
        add(key.replace("__", "."), value)
    return out
