"""The README's Python example ("The first hour") runs as written (one epoch instead of ten)."""
import re
from pathlib import Path

README = Path(__file__).resolve().parent.parent / "README.md"


def test_first_hour_python_example_runs(capsys):
    section = README.read_text().split("## The first hour", 1)[1].split("\n## ", 1)[0]
    code = re.search(r"```python\n(.*?)```", section, re.S).group(1)
    assert "range(10)" in code
    exec(compile(code.replace("range(10)", "range(1)"), "README.md", "exec"), {})
    line = capsys.readouterr().out.strip().splitlines()[-1]
    assert re.fullmatch(r"PSNR with the top 8 of 64 dims: \d+\.\d dB", line)
