"""eoflow_fast.progress: plain lines off a terminal, thinned to max_lines, silent when disabled."""
from eoflow_fast import progress


def test_lines_off_a_terminal(capsys):
    assert list(progress.bar(range(5), "job", unit="item")) == [0, 1, 2, 3, 4]
    assert capsys.readouterr().err.splitlines() == [f"job: {i}/5 item" for i in range(1, 6)]


def test_lines_are_thinned_and_end_at_the_total(capsys):
    assert sum(progress.bar(range(1000), "big", max_lines=4)) == sum(range(1000))
    assert capsys.readouterr().err.splitlines() == [f"big: {i}/1000 it" for i in (250, 500, 750, 1000)]


def test_disabled_by_argument_and_by_context(capsys):
    assert list(progress.bar([1, 2], "x", enable=False)) == [1, 2]
    with progress.enabled(False):
        assert list(progress.bar(iter([3]), "y")) == [3]
        assert list(progress.bar([4], "z", enable=True)) == [4]  # an explicit enable wins
        assert not progress.is_enabled()
    assert progress.is_enabled()
    assert capsys.readouterr().err.splitlines() == ["z: 1/1 it"]
