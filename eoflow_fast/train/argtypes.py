"""argparse ``type=`` validators shared by the CLI and the model families' flags.

Each raises ``argparse.ArgumentTypeError`` with the expected form, so argparse exits with status 2
and a message naming the flag.
"""
from __future__ import annotations

import argparse


def int_at_least(low: int):
    """A parser for integers >= ``low``."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
        if value < low:
            raise argparse.ArgumentTypeError(f"expected an integer >= {low}, got {value}")
        return value

    return parse


def nonneg_float(text: str) -> float:
    """A float >= 0 (NaN rejected)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not value >= 0:
        raise argparse.ArgumentTypeError(f"expected a number >= 0, got {text}")
    return value
