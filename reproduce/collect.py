"""Builds the README "Reproductions" table from ``bench/results/repro_*.json`` (one section of rows
per script, in ``ORDER``), followed by the claims that have no script or measured row yet
(``PENDING``: verdict "not run", with the command that would measure them).

    python -m reproduce.collect [--out FILE]
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

from .rows import RESULTS, markdown, row

ORDER = ("bfvae_fa", "ifp_speed", "deft_stages", "eoflow_pca_limit", "eoflow_compression", "eoflow_entropy")
PENDING = [
    row("DEFT: IFP per factor (Fig. 9)", "orientation lowest; dSprites factors almost separable (50 repeats)",
        "not run (no script yet)",
        "eoflow-fast ifp --data dsprites --repeats 50 --schedule staircase --steps 8000", "gpu", "not run"),
    row("DEFT: triangle toy (Fig. 14)", "only DEFT (K 2, G 2) puts orientation in its own latent; 10 runs x 10k steps",
        "not run (no script yet)", "eoflow-fast train deft --data triangle ... / train vae --model betatcvae --beta 6",
        "gpu", "not run"),
]


def collect(results_dir: Path = RESULTS) -> list[dict]:
    rows = []
    for name in ORDER:
        for path in sorted(results_dir.glob(f"repro_{name}_*.json")):
            rows += json.loads(path.read_text())["rows"]
    return rows + PENDING


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--out", default=None, help="write the table here (default: print it)")
    args = p.parse_args(argv)
    table = markdown(collect())
    if args.out:
        Path(args.out).write_text(table)
    else:
        print(table, end="")


if __name__ == "__main__":
    main()
