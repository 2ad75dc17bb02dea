"""DEFT Fig. 9: information freezing points per factor on dSprites, and whether they separate.

Paper (DEFT, arXiv 2102.03986, §5.3, Fig. 9): for each factor, enumerate all its values with the
others fixed at a random draw, run the annealing test (beta 200 -> 1) on those images and record
the IFP; 50 repeats per factor. Orientation has the lowest IFP; on dSprites the distributions are
"almost separable", and Table 2's G = 4 groups with betas 70, 30, 12, 4 are read off them ("G is
the number of separable areas in Fig. 9").

Ours: ``eoflow-fast ifp --data dsprites --repeats R --schedule staircase --steps T`` (20 log-spaced
plateaus, the IFP read at plateau ends). Rows:
- orientation lowest: per-factor median [interquartile range]; "reproduced" when orientation has the
  lowest median and its upper quartile lies below every other factor's lower quartile, "partly"
  when only the median is lowest;
- separable: the factors ordered by median and merged into one region while neighbouring
  interquartile ranges (and, separately, full ranges) overlap; the number of regions against the
  paper's G = 4; and for each Table 2 beta, the factors it splits (a factor is split by beta when
  more than 10% of its IFPs fall on each side [INFERRED tolerance]). "reproduced" when the
  interquartile regions number >= 4, "partly" when >= 2.

    python -m reproduce.ifp_factors --budget cpu     # R = 5, T = 3000: 25 tests of ~150 s each on
                                                     # one thread (about an hour)
    GPU, paper budget: eoflow-fast ifp --data dsprites --repeats 50 --schedule staircase --steps 8000 --device cuda
"""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np

from .rows import parse_budget, row, run_cli, write

BUDGETS = {"toy": {"data": "triangle", "factors": [0, 2], "repeats": 2, "steps": 24, "levels": 4},
           "cpu": {"data": "dsprites", "factors": None, "repeats": 5, "steps": 3000, "levels": 20}}
TABLE2_BETAS = (70.0, 30.0, 12.0, 4.0)
PAPER_GROUPS = 4
SPLIT_SHARE = 0.1
GPU = "eoflow-fast ifp --data dsprites --repeats 50 --schedule staircase --steps 8000 --device cuda --out runs/ifp_gpu"


def ifp_command(b: dict, out: Path) -> list[str]:
    args = ["ifp", "--data", b["data"], "--repeats", str(b["repeats"]), "--schedule", "staircase",
            "--steps", str(b["steps"]), "--levels", str(b["levels"]), "--device", "cpu", "--cpu-threads", "1",
            "--out", str(out)]
    if b["factors"] is not None:
        args += ["--factors", *map(str, b["factors"])]
    return args


def run_ifp(b: dict, out: Path, train: bool = True) -> dict | None:
    """{factor: [IFP or None per repeat]} of the run in ``out`` (trained unless ``ifp.json`` exists
    with these settings); None when it is missing and ``train`` is off."""
    path = out / "ifp.json"
    if not path.exists():
        if not train:
            return None
        run_cli(ifp_command(b, out))
    payload = json.loads(path.read_text())
    s = payload["settings"]
    got = (s["data"], s["repeats"], s["steps"], s["schedule"], s["levels"])
    want = (b["data"], b["repeats"], b["steps"], "staircase", b["levels"])
    if got != want:
        raise SystemExit(f"{path}: settings {got} differ from the budget's {want}")
    return payload["ifp"]


def factor_stats(ifps: dict) -> dict:
    """Per factor: repeats, how many froze, median, quartiles, min, max of the IFPs that froze."""
    out = {}
    for name, values in ifps.items():
        v = np.array([x for x in values if x is not None], dtype=float)
        q = np.percentile(v, [0, 25, 50, 75, 100]) if v.size else [None] * 5
        out[name] = {"repeats": len(values), "froze": int(v.size),
                     **{k: (None if x is None else float(x)) for k, x in zip(("min", "q25", "median", "q75", "max"), q)}}
    return out


def regions(stats: dict, low: str, high: str) -> list[list[str]]:
    """Factors ordered by median (highest first), merged into one region while an interval
    [stats[low], stats[high]] overlaps the running region's."""
    order = sorted((n for n in stats if stats[n]["froze"]), key=lambda n: -stats[n]["median"])
    groups: list[list[str]] = []
    floor = None
    for name in order:
        if groups and stats[name][high] >= floor:
            groups[-1].append(name)
            floor = min(floor, stats[name][low])
        else:
            groups.append([name])
            floor = stats[name][low]
    return groups


def splits(ifps: dict, betas=TABLE2_BETAS, share: float = SPLIT_SHARE) -> dict:
    """{beta: [factors with more than ``share`` of their IFPs on each side of beta]}."""
    out = {}
    for beta in betas:
        out[beta] = []
        for name, values in ifps.items():
            v = np.array([x for x in values if x is not None], dtype=float)
            if v.size and min((v > beta).mean(), (v <= beta).mean()) > share:
                out[beta].append(name)
    return out


def summarise(ifps: dict) -> dict:
    stats = factor_stats(ifps)
    froze = [n for n in stats if stats[n]["froze"]]
    lowest = min(froze, key=lambda n: stats[n]["median"]) if froze else None
    others = [n for n in froze if n != lowest]
    clean = bool(lowest and others and all(stats[lowest]["q75"] < stats[n]["q25"] for n in others))
    return {"stats": stats, "lowest": lowest, "lowest_clean": clean,
            "iqr_regions": regions(stats, "q25", "q75"), "range_regions": regions(stats, "min", "max"),
            "splits": {str(k): v for k, v in splits(ifps).items()}}


def plot(ifps: dict, path: Path, title: str) -> None:
    """IFPs per factor (log beta; points and the median), Table 2's betas as dashed lines."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    rng = np.random.RandomState(0)
    for i, (name, values) in enumerate(ifps.items()):
        v = np.array([x for x in values if x is not None], dtype=float)
        ax.scatter(i + rng.uniform(-0.12, 0.12, v.size), v, s=14, alpha=0.7)
        if v.size:
            ax.hlines(np.median(v), i - 0.3, i + 0.3, color="k", lw=1.5)
        ax.text(i, 1.05, f"{v.size}/{len(values)}", ha="center", fontsize=7)
    for beta in TABLE2_BETAS:
        ax.axhline(beta, color="red", ls="--", lw=0.7)
        ax.text(len(ifps) - 0.5, beta, f"{beta:g}", color="red", fontsize=7, va="bottom")
    ax.set_yscale("log")
    ax.set_ylim(1, 200)
    ax.set_xticks(range(len(ifps)), list(ifps))
    ax.set_ylabel("IFP (beta)")
    ax.set_title(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def rows_for(s: dict, b: dict, cmd: str) -> list[dict]:
    st = s["stats"]
    cell = lambda n: (f"{n} {st[n]['median']:.1f} [{st[n]['q25']:.1f}-{st[n]['q75']:.1f}] ({st[n]['froze']}/{st[n]['repeats']})"  # noqa: E731
                      if st[n]["froze"] else f"{n} never froze (0/{st[n]['repeats']})")
    per_factor = "; ".join(cell(n) for n in st)
    budget = f"{b['repeats']} repeats x {b['steps']} steps (paper: 50)"
    lowest = s["lowest"]
    v1 = ("reproduced" if lowest == "orientation" and s["lowest_clean"] else
          "partly" if lowest == "orientation" else "not reproduced")
    fmt = lambda groups: " > ".join("{" + ", ".join(g) + "}" for g in groups)  # noqa: E731
    n_iqr = len(s["iqr_regions"])
    split_txt = "; ".join(f"beta {float(k):g} splits {', '.join(v) if v else 'none'}" for k, v in s["splits"].items())
    v2 = "reproduced" if n_iqr >= PAPER_GROUPS else "partly" if n_iqr >= 2 else "not reproduced"
    return [
        row("DEFT IFP per factor on dSprites: orientation lowest (Fig. 9)",
            "orientation has the lowest IFP of all factors (§5.3, Fig. 9; 50 repeats per factor)",
            f"median [IQR] (froze/repeats): {per_factor}; lowest median: {lowest}"
            f"{' (IQR below all others)' if s['lowest_clean'] else ' (IQRs overlap)'}; {budget}",
            cmd, "cpu", v1, GPU),
        row("DEFT dSprites IFP distributions almost separable (Fig. 9, Table 2 G = 4)",
            "almost separable; G = 4 separable areas, stage betas 70, 30, 12, 4 (§5.3, Table 2)",
            f"{n_iqr} regions by IQR: {fmt(s['iqr_regions'])}; {len(s['range_regions'])} by full range; "
            f"{split_txt} (>10% on each side); {budget}",
            cmd, "cpu", v2, GPU),
    ]


def main(argv=None) -> None:
    budget, b, root, results_dir, args = parse_budget(__doc__, BUDGETS, "runs/repro_ifp_factors", argv, no_train=True)
    ifps = run_ifp(b, root, not args.no_train)
    cmd = f"python -m reproduce.ifp_factors --budget {budget}"
    if ifps is None:
        rows = [row("DEFT IFP per factor on dSprites (Fig. 9)", "orientation lowest; almost separable (50 repeats)",
                    f"not run (no run in {root})", cmd, "cpu", "not run", GPU)]
        print(write(f"ifp_factors_{budget}", rows, {}, results_dir))
        return
    s = summarise(ifps)
    name = f"ifp_factors_{budget}"
    plot(ifps, results_dir / f"repro_{name}.png",
         f"IFP per factor, {b['data']}, staircase {b['steps']} steps, {b['repeats']} repeats (red: Table 2 betas)")
    if (root / "ifp_histograms.png").exists():
        shutil.copyfile(root / "ifp_histograms.png", results_dir / f"repro_{name}_histograms.png")
    details = {"budget": b, "command": "eoflow-fast " + " ".join(ifp_command(b, root)), "ifp": ifps, **s}
    print(write(name, rows_for(s, b, cmd), details, results_dir))


if __name__ == "__main__":
    main()
