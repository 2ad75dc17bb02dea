"""Every subcommand's ``--help`` (each train family too, and each family's ``eval RUN --help``):
every flag has help and shows its default at most once."""
import argparse
import re

import pytest

from eoflow_fast.cli import main as cli_main
from eoflow_fast.cli.common import HelpFormatter
from eoflow_fast.cli.eval import eval_parser
from eoflow_fast.cli.train import family_parser
from eoflow_fast.train import registry

FAMILIES = sorted(registry.FAMILY_MODULES)


def _help(argv, capsys) -> str:
    with pytest.raises(SystemExit) as info:
        cli_main.main([*argv, "--help"])
    assert info.value.code == 0
    return capsys.readouterr().out


def _subcommand_argvs() -> list[list[str]]:
    parser = cli_main.build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    argvs = [[]]
    for name, child in sub.choices.items():
        argvs.append([name])
        nested = [a for a in child._actions if isinstance(a, argparse._SubParsersAction)]
        for action in nested:
            argvs.extend([name, n] for n in action.choices)
    return argvs + [["train", f] for f in FAMILIES]


def _flag_entries(text: str) -> dict[str, str]:
    """flag -> its help text (the lines after the flag up to the next flag or section)."""
    entries, current = {}, None
    for line in text.splitlines():
        head = re.match(r"^  (-[-\w]+|[A-Z_]+|\.\.\.|\{[^}]*\})(?:[ ,]|$)(.*)", line)
        if head:
            current = head.group(1)
            entries[current] = head.group(2)
        elif current and line.startswith("    "):
            entries[current] += " " + line.strip()
        elif not line.strip() or not line.startswith(" "):
            current = None
    return entries


def _parser_of(argv: list[str]) -> argparse.ArgumentParser:
    """The parser that handles ``eoflow-fast ARGV --help`` (train families have their own)."""
    if argv[:1] == ["train"] and len(argv) == 2:
        return family_parser(argv[1])[0]
    parser = cli_main.build_parser()
    for name in argv:
        sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
        parser = sub.choices[name]
    return parser


def _check_parser(parser: argparse.ArgumentParser, where: str) -> None:
    formatter = HelpFormatter(parser.prog)
    for action in parser._actions:
        if isinstance(action, (argparse._HelpAction, argparse._SubParsersAction)):
            continue
        name = "/".join(action.option_strings) or action.dest
        assert action.help and action.help.strip(), f"{where}: {name} has no help"
        shown = formatter._get_help_string(action)
        assert shown.count("(default:") <= 1, f"{where}: {name} shows its default twice: {shown}"
        if isinstance(action, (argparse._StoreTrueAction, argparse._StoreFalseAction)):
            assert "(default:" not in shown, f"{where}: switch {name} shows a default: {shown}"


@pytest.mark.parametrize("argv", _subcommand_argvs(), ids=lambda a: " ".join(a) or "eoflow-fast")
def test_every_flag_has_help_and_one_default(argv, capsys):
    _check_parser(_parser_of(argv), " ".join(argv) or "eoflow-fast")
    text = _help(argv, capsys)  # the rendered text too: no "(default: X) (default: Y)"
    for flag, entry in _flag_entries(text).items():
        assert entry.count("(default:") <= 1, f"{' '.join(argv)}: {flag}: {entry}"
    assert "(default: None)" not in text and "(default: True)" not in text and "(default: False)" not in text


def test_the_check_catches_a_flag_without_help():
    parser = argparse.ArgumentParser(prog="x", formatter_class=HelpFormatter)
    parser.add_argument("--seed", type=int, default=0)
    with pytest.raises(AssertionError, match="--seed has no help"):
        _check_parser(parser, "x")


def test_defaults_shown_once_and_not_for_switches():
    parser = argparse.ArgumentParser(formatter_class=HelpFormatter)
    parser.add_argument("--run-dir", help="folder (default: runs/X)")
    parser.add_argument("--no-progress", dest="progress", action="store_false", help="no bar")
    parser.add_argument("--n", type=int, default=64, help="items")
    parser.add_argument("--unset", default=None, help="optional")
    text = parser.format_help()
    assert text.count("(default:") == 2 and "(default: 64)" in text and "(default: runs/X)" in text
    assert "True" not in text and "None" not in text


@pytest.mark.parametrize("family", FAMILIES)
def test_eval_help_of_every_family(family, tmp_path, capsys):
    """``eval RUN --help`` for a run of each family (config.json is all it reads)."""
    (tmp_path / "config.json").write_text(f'{{"model": "{family}"}}')
    _check_parser(eval_parser(str(tmp_path), {"model": family}, registry.get(family)), f"eval ({family})")
    text = _help(["eval", str(tmp_path)], capsys)
    entries = _flag_entries(text)
    assert "--cpu-threads" in entries and "--json" in entries
    for flag, help_text in entries.items():
        assert help_text.strip() and help_text.count("(default:") <= 1, (family, flag, help_text)
    if family in ("vae", "deft", "eoflow"):
        assert "--metrics" in entries
    if family == "vae":
        assert "(default: mig,nmi,informative)" in entries["--metrics"]


def test_every_command_has_cpu_threads(capsys):
    for argv in (["train", "toy"], ["train", "eoflow"], ["train", "vae"], ["train", "deft"], ["compress"],
                 ["denoise"], ["traverse"], ["ifp"]):
        assert "--cpu-threads" in _help(argv, capsys), argv
