"""What every subcommand shares: the help formatter, the one-line error path, ``--cpu-threads``,
``--json`` and the end-of-run summary.

* :class:`Parser` is the ``argparse.ArgumentParser`` of every (sub)command. Its ``error`` prints ONE
  line, ``PROG: error: MESSAGE``, plus the nearest valid flag or choice (``difflib``) when the message
  is about an unknown one, and exits with status 2 (no usage dump).
* :class:`HelpFormatter` appends ``(default: X)`` to a flag's help exactly once: not when the help
  already states its default, not for switches (``store_true``/``store_false``) and not for
  defaults that mean "unset" (None).
* :class:`~eoflow_fast.train.registry.UsageError` is what a command or family raises for a user mistake found after parsing (an unknown
  dataset, a missing run folder); ``eoflow-fast`` prints it as one line and exits 2.
* ``--no-progress`` (:func:`add_no_progress`, :func:`progress_from`) silences
  :mod:`eoflow_fast.progress` for the whole command.
* :func:`print_summary` ends a command: a headline line, the scalar scores as a small table and the
  files written; ``--json`` prints the full result as JSON instead (for scripts).
"""
from __future__ import annotations

import argparse
import contextlib
import difflib
import json
import re
import sys
from pathlib import Path

from eoflow_fast.train.argtypes import int_at_least
from eoflow_fast.train.registry import UsageError

CPU_THREADS_DEFAULT = 1
"""Default of ``--cpu-threads``: 1, measured on the shared 2-core machine (see README "Threads")."""

MAX_TABLE_ROWS = 16


def suggest(word: str, candidates) -> str:
    """``"; did you mean 'X'?"`` for the nearest candidate, else ``""``: a candidate with the same
    letters (a transposition, ``mgi`` -> ``mig``) first, then the closest by ``difflib`` ratio."""
    candidates = [str(c) for c in candidates]
    same_letters = [c for c in candidates if sorted(c.lower()) == sorted(str(word).lower())]
    match = same_letters or difflib.get_close_matches(str(word), candidates, n=1, cutoff=0.6)
    return f"; did you mean {match[0]!r}?" if match else ""


class HelpFormatter(argparse.RawDescriptionHelpFormatter):
    """Descriptions as written (docstrings); each flag's default shown once (see module doc)."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        if "default" in text.lower() or action.default in (None, argparse.SUPPRESS):
            return text
        if isinstance(action, (argparse._StoreTrueAction, argparse._StoreFalseAction,
                               argparse._StoreConstAction, argparse._HelpAction, argparse._VersionAction)):
            return text
        if not action.option_strings and action.nargs not in ("?", "*"):
            return text
        default = action.default
        if isinstance(default, (list, tuple)):
            default = " ".join(str(v) for v in default)
        return f"{text} (default: {str(default).replace('%', '%%')})"


_UNKNOWN_ARGS = re.compile(r"unrecognized arguments: (.*)")
_BAD_CHOICE = re.compile(r"argument (.+?): invalid choice: '?(.*?)'? \(choose from (.*)\)")


class Parser(argparse.ArgumentParser):
    """ArgumentParser with :class:`HelpFormatter` and one-line errors with a suggestion."""

    def __init__(self, *args, **kwargs):
        kwargs.setdefault("formatter_class", HelpFormatter)
        super().__init__(*args, **kwargs)

    def option_names(self) -> list[str]:
        return [s for a in self._actions for s in a.option_strings]

    def parse_args(self, args=None, namespace=None):
        """As argparse, but unknown arguments are reported by the (sub)command that was chosen, so
        the suggestion comes from its flags: ``traverse RUN --dimz 2`` suggests ``--dims``."""
        namespace, extras = self.parse_known_args(args, namespace)
        if extras:
            self._chosen(namespace).error(f"unrecognized arguments: {' '.join(extras)}")
        return namespace

    def _chosen(self, namespace) -> argparse.ArgumentParser:
        for action in self._actions:
            if isinstance(action, argparse._SubParsersAction):
                child = action.choices.get(getattr(namespace, action.dest, None) or "")
                if child is not None:
                    return child._chosen(namespace) if isinstance(child, Parser) else child
        return self

    def error(self, message: str):
        unknown = _UNKNOWN_ARGS.fullmatch(message)
        if unknown:
            first = next((w for w in unknown.group(1).split() if w.startswith("-")), unknown.group(1).split()[0])
            message += suggest(first.split("=")[0], self.option_names())
        choice = _BAD_CHOICE.fullmatch(message)
        if choice:
            options = [c.strip().strip("'") for c in choice.group(3).split(",")]
            message += suggest(choice.group(2), options)
        fail(self.prog, message)


def fail(prog: str, message: str, status: int = 2):
    """Print ``PROG: error: MESSAGE`` as one line on stderr and exit with ``status``."""
    print(f"{prog}: error: {' '.join(str(message).split())}", file=sys.stderr)
    sys.exit(status)


# ------------------------------------------------------------------ run folders
def check_run_folder(run_dir, argument: str = "RUN_DIR") -> Path:
    """``Path(run_dir)`` when it is a folder holding ``config.json``; else a :class:`UsageError`
    saying which: the path does not exist, is a file, is an empty folder, or is a folder without
    ``config.json`` (its first entries named). What is wrong INSIDE a run folder (a damaged
    config.json, no or a corrupt checkpoint, settings the family refuses) is not an argument
    error: :func:`run_folder_error` reports it."""
    from eoflow_fast.train.run_folder import CONFIG_FILE

    path = Path(run_dir)
    if not path.exists():
        raise UsageError(f"argument {argument}: {path} does not exist")
    if not path.is_dir():
        raise UsageError(f"argument {argument}: {path} is a file, not a run folder")
    if not (path / CONFIG_FILE).is_file():
        entries = sorted(p.name for p in path.iterdir())
        held = "it is empty" if not entries else "it holds " + ", ".join(entries[:5]) + (", ..." if len(entries) > 5 else "")
        raise UsageError(f"argument {argument}: {path} is not a run folder: it has no {CONFIG_FILE} ({held})")
    return path


def run_folder_error(prog: str, run_dir, exc: Exception, status: int = 1):
    """One line for a run folder that exists but cannot be opened, then exit ``status``: a
    ``CheckpointError`` (damaged config.json, no checkpoint, a corrupt or foreign one, changed data)
    names its file already; an error of ``eoflow_fast.data`` (a shard, CSV file or image of the run's
    data) is said to be the data's; anything else came from rebuilding the model from config.json."""
    from eoflow_fast.train.checkpoint import CheckpointError
    from eoflow_fast.train.run_folder import CONFIG_FILE

    if isinstance(exc, CheckpointError):
        message = str(exc)
    elif type(exc).__module__.startswith("eoflow_fast.data"):  # the run's data: a shard, CSV or image
        message = f"run {run_dir}: its data cannot be read ({type(exc).__name__}: {exc})"
    else:
        message = (f"run {run_dir}: the model cannot be rebuilt from {Path(run_dir) / CONFIG_FILE} "
                   f"({type(exc).__name__}: {exc})")
    fail(prog, message, status)


# ------------------------------------------------------------------ shared flags
def add_cpu_threads(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--cpu-threads", type=int_at_least(0), default=CPU_THREADS_DEFAULT,
        help=f"torch intra- and inter-op CPU threads, set before any work (0: torch's default; default "
             f"{CPU_THREADS_DEFAULT}: on a shared 2-core CPU one thread was fastest for every model we "
             f"measured, see README 'Threads')")


def add_no_progress(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--no-progress", action="store_true",
                        help="no progress bars or progress lines (eoflow_fast.progress) on stderr")


@contextlib.contextmanager
def progress_from(args):
    """Within the block the progress helper shows progress unless ``args.no_progress``."""
    from eoflow_fast import progress

    with progress.enabled(not getattr(args, "no_progress", False)):
        yield


def add_json(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true",
                        help="print the full result as JSON on stdout instead of the summary")


def apply_cpu_threads(threads: int) -> None:
    """``torch.set_num_threads(threads)`` and, while torch still allows it (before any inter-op
    work), ``torch.set_num_interop_threads(threads)``; 0 leaves torch's defaults."""
    import torch

    if threads > 0:
        torch.set_num_threads(threads)
        try:
            torch.set_num_interop_threads(threads)
        except RuntimeError:  # already set, or parallel work already ran in this process
            pass


# ------------------------------------------------------------------ summaries
def headline(result, limit: int = MAX_TABLE_ROWS) -> dict[str, float]:
    """The scalar numbers of a (nested) result dict as ``{"a.b": value}``: nested dicts are walked,
    lists and matrices skipped (they stay in the JSON files)."""
    out: dict[str, float] = {}

    def walk(prefix: str, value) -> None:
        if isinstance(value, bool):
            return
        if isinstance(value, (int, float)):
            out[prefix] = value
        elif isinstance(value, dict):
            for k, v in value.items():
                walk(f"{prefix}.{k}" if prefix else str(k), v)

    walk("", result)
    return out


def eval_headline(result) -> dict[str, float]:
    """:func:`headline` of an evaluation result, its mean loss terms (``eval/NAME`` during training,
    plain names from ``eval`` of a family without its own evaluation) shown by the rule of the
    progress bar (``train.logging.shown_values``): no ``_`` diagnostics, and no ``loss`` that
    repeats a single optimized term."""
    from eoflow_fast.train.logging import shown_values

    scores = headline(result)
    prefix = "eval/" if any(k.startswith("eval/") for k in scores) else ""
    kept = shown_values(scores, prefix, diagnostics=False) if prefix or "loss" in scores else scores
    return {k: v for k, v in scores.items() if k in kept or (prefix and not k.startswith(prefix))}


def format_table(scores: dict[str, float], limit: int = MAX_TABLE_ROWS) -> list[str]:
    width = max((len(k) for k in scores), default=0)
    lines = [f"  {k:<{width}}  {v:.4g}" if isinstance(v, float) else f"  {k:<{width}}  {v}"
             for k, v in list(scores.items())[:limit]]
    if len(scores) > limit:
        lines.append(f"  ... {len(scores) - limit} more in the JSON (--json)")
    return lines


def written_since(folder, since: float) -> list[str]:
    """Files under ``folder`` modified at or after ``since`` (a ``time.time()``), relative paths;
    a sub-folder with more than three new files is listed as ``DIR/ (N files)``."""
    folder = Path(folder)
    if not folder.is_dir():
        return []
    new = sorted(p.relative_to(folder) for p in folder.rglob("*") if p.is_file() and p.stat().st_mtime >= since - 1)
    groups: dict[str, list] = {}
    for p in new:
        groups.setdefault(str(p.parent) if len(p.parts) > 1 else "", []).append(p)
    out = []
    for parent, files in groups.items():
        if parent and len(files) > 3:
            out.append(f"{parent}/ ({len(files)} files)")
        else:
            out.extend(str(p) for p in files)
    return out


@contextlib.contextmanager
def results_stdout(args):
    """Yields the stream for the command's result. With ``--json`` whatever the work prints goes to
    stderr meanwhile, so stdout holds the JSON document alone."""
    stream = sys.stdout
    if getattr(args, "json", False):
        with contextlib.redirect_stdout(sys.stderr):
            yield stream
    else:
        yield stream


def print_summary(args, title: str, result, scores: dict | None = None, files=(), folder=None,
                  stream=None) -> None:
    """``--json``: the full ``result`` as JSON. Otherwise ``title``, the table of ``scores``
    (default: the scalars of ``result``) and the files written (relative to ``folder``). Printed to
    ``stream`` (default: stdout)."""
    from eoflow_fast.train.logging import jsonable

    stream = stream or sys.stdout
    if getattr(args, "json", False):
        print(json.dumps(jsonable(result), indent=2), file=stream)
        return
    print(title, file=stream)
    for line in format_table(headline(result) if scores is None else scores):
        print(line, file=stream)
    files = list(files)
    if files:
        print((f"files in {folder}: " if folder is not None else "files: ") + ", ".join(files), file=stream)
