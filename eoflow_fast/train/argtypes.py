"""Typed argument definitions shared by every parser: command-line flags and ``--config`` files.

Each ``type=`` parser below takes the flag's text and returns the value or raises
``argparse.ArgumentTypeError`` stating the expected form, so argparse exits with status 2 naming the
flag. :func:`check_config_value` runs the same parser on a value read from a YAML/JSON ``--config``
file, so a key is checked exactly like its flag: ``"steps": true`` or ``"lr": true`` (booleans are not
numbers here), ``"hidden": 2.5``, ``"hidden": -5`` and ``"lr": .inf`` are refused naming the key.
:func:`load_mapping` reads such a file and refuses duplicate keys (YAML and JSON alike).
"""
from __future__ import annotations

import argparse
import json
import math
import os
import re

_CUDA_DEVICE = re.compile(r"cuda(:\d+)?")


def _named(parse, name: str):
    parse.__name__ = name  # argparse names the type in "invalid <name> value" messages
    return parse


def int_at_least(low: int):
    """A parser for integers >= ``low`` (decimal text; ``2.5`` and ``true`` are refused)."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except (TypeError, ValueError):
            raise argparse.ArgumentTypeError(f"expected an integer >= {low}, got {text!r}") from None
        if value < low:
            raise argparse.ArgumentTypeError(f"expected an integer >= {low}, got {value}")
        return value

    return _named(parse, f"integer >= {low}")


def float_in(low: float = 0.0, high: float = math.inf, low_open: bool = False):
    """A parser for finite numbers in ``[low, high]`` (``(low, high]`` with ``low_open``); NaN and
    +-inf are refused."""
    bracket = "(" if low_open else "["
    span = f"{bracket}{low:g}, {high:g}" + (")" if high == math.inf else "]")

    def parse(text: str) -> float:
        try:
            value = float(text)
        except (TypeError, ValueError):
            raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
        inside = math.isfinite(value) and (value > low if low_open else value >= low) and value <= high
        if not inside:
            raise argparse.ArgumentTypeError(f"expected a finite number in {span}, got {text}")
        return value

    return _named(parse, f"number in {span}")


nonneg_float = float_in(0.0)
positive_float = float_in(0.0, low_open=True)


def device(text: str) -> str:
    """``auto``, ``cpu``, ``cuda`` or ``cuda:N`` (``meta`` and other torch device types are refused:
    the engine cannot train on them)."""
    if text in ("auto", "cpu") or _CUDA_DEVICE.fullmatch(str(text)):
        return text
    raise argparse.ArgumentTypeError(f"expected 'auto', 'cpu', 'cuda' or 'cuda:N', got {text!r}")


device = _named(device, "device")


def out_file(text: str) -> str:
    """A path a command writes one file to: not an existing folder, in a folder that exists (checked
    when the flags are parsed, so a bad path costs no work and gives no traceback)."""
    folder = os.path.dirname(os.path.abspath(text))
    if os.path.isdir(text):
        raise argparse.ArgumentTypeError(f"expected a file path, got the folder {text!r}")
    if not os.path.isdir(folder):
        raise argparse.ArgumentTypeError(f"the folder {folder!r} of {text!r} does not exist")
    return text


out_file = _named(out_file, "file path")


def out_folder(text: str) -> str:
    """A folder a command writes into: an existing folder, or a path that can be made one (no part
    of it an existing file); checked when the flags are parsed, so a file given as the folder fails
    at once, not with a traceback after the work is done."""
    path = os.path.abspath(text)
    while not os.path.exists(path):
        path = os.path.dirname(path)
    if not os.path.isdir(path):
        what = "is a file" if path == os.path.abspath(text) else f"lies under the file {path!r}"
        raise argparse.ArgumentTypeError(f"expected a folder, got {text!r}, which {what}")
    return text


out_folder = _named(out_folder, "folder")


def set_default(parser: argparse.ArgumentParser, dest: str, default, help: str) -> None:
    """Give the flag ``dest`` (added elsewhere) a new default and the help that states it."""
    action = next(a for a in parser._actions if a.dest == dest)
    action.default, action.help = default, help


# ------------------------------------------------------------------ config files
class _UniqueKeyLoader:
    """A yaml SafeLoader subclass (built lazily: yaml is imported only for YAML files) whose
    mappings refuse a key given twice."""

    cls = None

    @classmethod
    def get(cls):
        if cls.cls is None:
            import yaml

            class Loader(yaml.SafeLoader):
                def construct_mapping(self, node, deep=False):
                    seen = set()
                    for key_node, _ in node.value:
                        key = self.construct_object(key_node, deep=deep)
                        if key in seen:
                            raise yaml.constructor.ConstructorError(
                                None, None, f"duplicate key {key!r}", key_node.start_mark)
                        seen.add(key)
                    return super().construct_mapping(node, deep=deep)

            cls.cls = Loader
        return cls.cls


def _unique_pairs(pairs):
    out = {}
    for key, value in pairs:
        if key in out:
            raise ValueError(f"duplicate key {key!r}")
        out[key] = value
    return out


def load_mapping(path: str, text: str):
    """The mapping in ``text`` (YAML for ``*.yaml``/``*.yml``, else JSON); duplicate keys raise
    ValueError naming the key, syntax errors raise ValueError with the parser's message."""
    if path.endswith((".yaml", ".yml")):
        import yaml

        try:
            return yaml.load(text, Loader=_UniqueKeyLoader.get())
        except yaml.YAMLError as exc:
            raise ValueError(f"{path} is not valid YAML: {' '.join(str(exc).split())}") from None
    try:
        return json.loads(text, object_pairs_hook=_unique_pairs)
    except json.JSONDecodeError as exc:
        raise ValueError(f"{path} is not valid JSON: {exc}") from None
    except ValueError as exc:
        raise ValueError(f"{path}: {exc}") from None


def check_config_value(action: argparse.Action, value):
    """``value`` (read from a config file for ``action.dest``) checked as its flag would be; returns
    the parsed value or raises ``argparse.ArgumentTypeError``.

    Switches (``store_true``/``store_false``) take only booleans; ``null`` is allowed where the flag's
    default is None ("not set"); a list is allowed for flags taking several values (each item is
    checked) and, for single-valued flags, joined with commas (``core_sizes: [4, 16]``)."""
    if isinstance(action, (argparse._StoreTrueAction, argparse._StoreFalseAction)):
        if not isinstance(value, bool):
            raise argparse.ArgumentTypeError(f"expected true or false, got {value!r}")
        return value
    if value is None:
        if action.default is None:
            return None
        raise argparse.ArgumentTypeError(f"expected a value, got null (default {action.default!r})")
    many = action.nargs in ("*", "+") or isinstance(action.nargs, int)
    if many:
        if not isinstance(value, list):
            raise argparse.ArgumentTypeError(f"expected a list, got {value!r}")
        return [_check_one(action, v) for v in value]
    if isinstance(value, list) and action.type is not None:
        value = ",".join(str(v) for v in value)
    return _check_one(action, value)


def _check_one(action: argparse.Action, value):
    if isinstance(value, bool):  # bool is an int in Python; never a number, size or name here
        raise argparse.ArgumentTypeError(f"expected {_expected(action)}, got {json.dumps(value)}")
    if isinstance(value, (dict, list)):
        raise argparse.ArgumentTypeError(f"expected {_expected(action)}, got {value!r}")
    if action.type is not None:
        value = action.type(value if isinstance(value, str) else repr(value) if isinstance(value, float)
                            else str(value))
    elif not isinstance(value, str):
        raise argparse.ArgumentTypeError(f"expected a string, got {value!r}")
    if action.choices is not None and value not in action.choices:
        raise argparse.ArgumentTypeError(f"expected one of {list(action.choices)}, got {value!r}")
    return value


def _expected(action: argparse.Action) -> str:
    if action.choices is not None:
        return f"one of {list(action.choices)}"
    return getattr(action.type, "__name__", "a string") if action.type is not None else "a string"
