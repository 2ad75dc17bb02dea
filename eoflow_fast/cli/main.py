"""``eoflow-fast``: the command-line entry point.

Each subcommand lives in ``eoflow_fast/cli/<cmd>.py`` (for ``cmd`` in :data:`COMMANDS`) and exposes
``register(subparsers)``, which adds its parser and sets ``func=run`` with ``run(args) -> int | None``
(the exit status; None means 0). A subcommand whose module is missing or fails to import still
appears in ``--help``; running it prints why it is unavailable and exits with status 2.
User errors (a bad flag or value, an unknown dataset, model or metric, a missing run folder) print one
line naming what was wrong, with the nearest valid name, and exit with status 2
(:mod:`eoflow_fast.cli.common`); ``--debug`` shows the traceback of a :class:`UsageError` too. An
image that cannot be decoded when a command reads it (``data.images.UnreadableImage``: its header
read, its body did not) is one line naming the file, exit status 1.
"""
from __future__ import annotations

import argparse
import importlib
import sys

from .common import Parser, UsageError

COMMANDS = ["train", "eval", "bench", "data", "compress", "denoise", "traverse", "ifp"]


def _unavailable(subparsers, name: str, reason: str) -> None:
    parser = subparsers.add_parser(name, help=f"(unavailable: {reason})", description=f"unavailable: {reason}")

    def run(args):
        parser.error(f"the '{name}' command is not available in this installation: {reason}")

    parser.set_defaults(func=run)


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(
        prog="eoflow-fast",
        description="Entropy-ordered flows, disentangling VAEs and DEFT on one fused-kernel engine.",
    )
    from eoflow_fast import __version__

    parser.add_argument("--version", action="version", version=f"eoflow-fast {__version__}")
    parser.add_argument("--debug", action="store_true", help="show tracebacks of user errors too")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name in COMMANDS:
        module_name = f"eoflow_fast.cli.{name}"
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as exc:
            reason = (f"module {module_name} is not present" if exc.name == module_name
                      else f"importing {module_name} failed: {exc}")
            _unavailable(subparsers, name, reason)
            continue
        except Exception as exc:  # a broken subcommand must not take the others down
            _unavailable(subparsers, name, f"importing {module_name} failed: {type(exc).__name__}: {exc}")
            continue
        if not hasattr(module, "register"):
            _unavailable(subparsers, name, f"{module_name} has no register(subparsers) function")
            continue
        module.register(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        status = args.func(args)
    except UsageError as exc:
        if args.debug:
            raise
        print(f"eoflow-fast {args.command}: error: {' '.join(str(exc).split())}", file=sys.stderr)
        return 2
    except OSError as exc:
        from eoflow_fast.data.images import UnreadableImage

        if args.debug or not isinstance(exc, UnreadableImage):
            raise
        print(f"eoflow-fast {args.command}: error: {unreadable_message(exc)}", file=sys.stderr)
        return 1
    return 0 if status is None else int(status)


def unreadable_message(exc: OSError) -> str:
    """One line for an image that cannot be decoded when it is read (its header read when the dataset
    was built): the file and what to do. A DataLoader worker's copy of the error carries the worker's
    traceback in its message; its last line is the error."""
    lines = [line for line in str(exc).splitlines() if line.strip()]
    text = lines[-1].split("UnreadableImage: ", 1)[-1] if lines else repr(exc)
    return (f"{' '.join(text.split())}; remove or replace the file (or pack the folder: 'eoflow-fast data pack' "
            f"decodes every image and skips the unreadable ones by name)")


if __name__ == "__main__":
    sys.exit(main())
