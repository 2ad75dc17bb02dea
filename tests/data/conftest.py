"""Shared fixtures of the data tests."""
import argparse

import pytest


@pytest.fixture
def data_cli():
    """``data_cli(*argv) -> exit status`` of ``eoflow-fast data ...`` (parsed by the subcommand alone)."""
    from eoflow_fast.cli import data as data_command

    def run(*argv):
        parser = argparse.ArgumentParser(prog="eoflow-fast")
        data_command.register(parser.add_subparsers(dest="command"))
        args = parser.parse_args(list(argv))
        return args.func(args)

    return run
