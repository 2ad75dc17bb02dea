"""DEFT annealing test: the whole-dataset IFP on dSprites and its dependence on the annealing speed.

Paper (DEFT, arXiv 2102.03986, §4.1, Fig. 4): annealing beta from 200 to 0 over 100,000 iterations,
the IFP is ~ 32 (reached after ~ 7,400 iterations).

Ours: ``eoflow-fast ifp --data dsprites --unsupervised --steps T --schedule S`` for S in
(staircase, loglinear) and T in (2000, 4000) (CPU budget), and the same on the linear toy of
tests/deft (a line of variance 20 whose settled IFP is known: beta* = 20 e^-0.2 = 16.4) at 600,
1800 and 5400 steps. A schedule is speed-independent when doubling T leaves the IFP within one
plateau ratio (200^(1/19) = 1.32 for 20 levels).

The settle schedule (``--schedule settle --settle-window W --steps T --stop-after-freeze``: each
plateau held until I(x; z) stops rising over W steps, capped at T / 20) runs at two (W, T) on
dSprites and on the toy; its rows give each IFP with the steps it used and the plateaus that hit
the cap (not settled).

    python -m reproduce.ifp_speed --budget cpu     # 4 dSprites runs (each > 20 min on a loaded 2-core
                                                   # machine) + the toy (~1 min); --no-train: report
                                                   # only the dSprites runs already there
    GPU, paper budget: eoflow-fast ifp --data dsprites --unsupervised --steps 100000 --schedule staircase --device cuda
"""
from __future__ import annotations

import json
import math
import sys
from pathlib import Path

from .rows import ROOT, parse_budget, row, run_cli, write

BUDGETS = {"toy": {"steps": (40, 80), "num_points": 64, "toy_steps": (200, 400),
                   "settle": ((20, 400), (40, 800)), "toy_settle": ((20, 2000), (60, 6000))},
           "cpu": {"steps": (2000, 4000), "num_points": 10_000, "toy_steps": (600, 1800, 5400),
                   "settle": ((100, 8000), (200, 16000)), "toy_settle": ((20, 2000), (60, 6000))}}
SCHEDULES = ("staircase", "loglinear")
RATIO = 200.0 ** (1 / 19)


NOT_RUN = "not run"


def dsprites_ifp(schedule: str, steps: int, num_points: int, out: Path, train: bool = True) -> float | str | None:
    """IFP of one whole-dataset run (reused if ``out/ifp.json`` exists with these settings; without
    ``train`` a missing run is ``NOT_RUN``); None: I(x; z) never crossed the threshold."""
    path = out / "ifp.json"
    if not path.exists() and not train:
        return NOT_RUN
    if not path.exists():
        args = ["ifp", "--data", "dsprites", "--unsupervised", "--steps", str(steps), "--schedule", schedule,
                "--num-points", str(num_points), "--device", "cpu", "--out", str(out)]
        run_cli(args)
    payload = json.loads(path.read_text())
    s = payload["settings"]
    if (s["steps"], s["schedule"], s["num_points"]) != (steps, schedule, num_points):
        raise SystemExit(f"{path}: settings {s['steps'], s['schedule'], s['num_points']} differ from the budget's")
    return payload["ifp"]


def dsprites_settle(window: int, steps: int, num_points: int, out: Path, train: bool = True) -> dict | str:
    """One whole-dataset run of the settle schedule (window ``window``, cap ``steps`` / 20, ending at
    the freezing point), reused if ``out/ifp.json`` exists with these settings; ``NOT_RUN`` without
    ``train`` when it does not. Returns its IFP, the steps it used and its plateaus (beta, steps,
    settled)."""
    from eoflow_fast.deft.annealing import SETTLE_TOL

    path = out / "ifp.json"
    if not path.exists() and not train:
        return NOT_RUN
    if not path.exists():
        run_cli(["ifp", "--data", "dsprites", "--unsupervised", "--schedule", "settle", "--settle-window", str(window),
                 "--steps", str(steps), "--num-points", str(num_points), "--stop-after-freeze", "--device", "cpu",
                 "--out", str(out)])
    payload = json.loads(path.read_text())
    s = payload["settings"]
    want = ("settle", window, SETTLE_TOL, steps, num_points)
    if (s["schedule"], s["settle_window"], s["settle_tol"], s["steps"], s["num_points"]) != want:
        raise SystemExit(f"{path}: settings differ from the budget's settle run {want}")
    run = payload["run"]
    return {"ifp": payload["ifp"], "steps_used": len(run["betas"]), "cap": steps // s["levels"],
            "plateaus": [{k: p[k] for k in ("beta", "steps", "settled")} for p in run["plateaus"]]}


def settle_label(run: dict | str) -> str:
    """'IFP (S steps, k of n plateaus capped[: betas])' of a ``dsprites_settle`` result."""
    if run == NOT_RUN:
        return NOT_RUN
    capped = [p for p in run["plateaus"] if not p["settled"]]
    ifp = "none" if run["ifp"] is None else f"{run['ifp']:.1f}"
    where = (": beta " + ", ".join(f"{p['beta']:.1f}" for p in capped)) if capped else ""
    return f"{ifp} ({run['steps_used']} steps, {len(capped)} of {len(run['plateaus'])} plateaus capped{where})"


def plateau_settling(run: dict, steps: int, levels: int = 20) -> list[dict]:
    """Per staircase plateau of a run's curves (``asdict(AnnealingResult)``): its beta, I(x; z) at
    its end, and ``rise_second_half`` = I at the end minus I at the first measurement in its second
    half: near 0 where I(x; z) settled within the plateau, positive where it was still rising when
    beta moved on (the plateau too short for the IFP to be speed-independent)."""
    from eoflow_fast.deft.annealing import staircase_level

    by_level: dict[int, list[tuple[int, float]]] = {}
    for step, value in zip(run["mi_steps"], run["mi"]):
        by_level.setdefault(staircase_level(step, steps, levels), []).append((step, value))
    out = []
    for level in sorted(by_level):
        points = by_level[level]
        start, end = points[0][0], points[-1][0]
        mid = next(v for s, v in points if s >= (start + end) / 2)
        out.append({"level": level, "beta": run["betas"][start], "start": start, "end": end,
                    "mi_end": points[-1][1], "rise_second_half": points[-1][1] - mid})
    return out


def settling_summary(path: Path, threshold: float = 0.1) -> dict | None:
    """Plateau settling of the staircase run in ``path`` (ifp.json with curves), or None: every
    plateau's row, and the plateau where I(x; z) first crossed ``threshold`` at its end."""
    if not path.exists():
        return None
    payload = json.loads(path.read_text())
    s, run = payload["settings"], payload["run"]
    rows = plateau_settling(run, s["steps"], s["levels"])
    collapsed, crossed = False, None
    for r in rows:
        collapsed = collapsed or r["mi_end"] <= 0.01
        if collapsed and r["mi_end"] > threshold:
            crossed = r
            break
    return {"steps": s["steps"], "plateau_steps": s["steps"] // s["levels"], "ifp": payload["ifp"], "plateaus": rows,
            "crossing": crossed}


def toy_ifp(schedule: str, steps: int, settle_window: int = 100) -> float | None:
    """IFP on the linear line toy of tests/deft/test_annealing.py (lambda = 20, lr 0.1); the settle
    schedule measures I(x; z) every 10 steps."""
    import torch

    from eoflow_fast.deft import annealing as AN

    sys.path.insert(0, str(ROOT / "tests" / "deft"))
    from test_annealing import line_data, linear_vae

    torch.manual_seed(1)
    result = AN.annealing_test(linear_vae(), line_data(20.0), steps, lr=0.1, schedule=schedule, levels=20,
                               mi_every=10 if schedule in ("loglinear", AN.SETTLE) else 10 ** 9,
                               settle_window=settle_window)
    return result.ifp


def spread(values: list) -> float | None:
    """max / min of the IFPs over speeds; inf if one never froze, None if fewer than two were run."""
    ran = [v for v in values if v != NOT_RUN]
    if len(ran) < 2:
        return None
    return math.inf if None in ran else max(ran) / min(ran)


def dsprites_speed_verdict(dsprites_spread: float | None, toy_spread: float | None) -> str:
    """The claim is about dSprites: "reproduced" when its staircase IFPs stay within one plateau
    ratio over the speeds, "not reproduced" when they were measured and do not; only while dSprites
    has not run does the linear toy stand in ("partly" when it holds)."""
    if dsprites_spread is not None:
        return "reproduced" if dsprites_spread < RATIO else "not reproduced"
    return "partly" if toy_spread is not None and toy_spread < RATIO else "not reproduced"


def main(argv=None) -> None:
    budget, b, root, results_dir, args = parse_budget(__doc__, BUDGETS, "runs/repro_ifp", argv, no_train=True)
    details = {"toy": {}, "dsprites": {}, "toy_beta_star": 20 * math.exp(-0.2), "earlier": {}, "settling": {},
               "settle": {"dsprites": {}, "toy": {}}}
    previous = results_dir / f"repro_ifp_speed_{budget}.json"
    previous = json.loads(previous.read_text())["details"] if previous.exists() else {}
    for sched in SCHEDULES:
        details["toy"][sched] = {str(t): toy_ifp(sched, t) for t in b["toy_steps"]}
        details["dsprites"][sched] = {str(t): dsprites_ifp(sched, t, b["num_points"], root / f"{sched}_{t}",
                                                           not args.no_train) for t in b["steps"]}
        for t, v in details["dsprites"][sched].items():  # a value measured before whose run folder is gone
            old = previous.get("dsprites", {}).get(sched, {}).get(t, NOT_RUN)
            if v == NOT_RUN and old != NOT_RUN:
                details["dsprites"][sched][t] = old
                details["earlier"].setdefault(sched, []).append(t)
            if sched == "staircase":
                settled = settling_summary(root / f"{sched}_{t}" / "ifp.json")
                if settled is not None:
                    details["settling"][t] = settled
    for w, t in b["settle"]:
        details["settle"]["dsprites"][f"{w}/{t}"] = dsprites_settle(w, t, b["num_points"], root / f"settle_{w}_{t}",
                                                                    not args.no_train)
    for w, t in b["toy_settle"]:
        details["settle"]["toy"][f"{w}/{t}"] = toy_ifp("settle", t, w)
    earlier = lambda sched, t: "*" if t in details["earlier"].get(sched, []) else ""  # noqa: E731
    label = lambda v: NOT_RUN if v == NOT_RUN else "none" if v is None else f"{v:.1f}"  # noqa: E731
    fmt = lambda d, sched="": ", ".join(f"{label(v)}{earlier(sched, t)} at {t}" for t, v in d.items())  # noqa: E731
    note = " (* an earlier run of the same command, curves not kept)" if details["earlier"] else ""
    settle = "; ".join(
        f"staircase {t} steps ({x['plateau_steps']}-step plateaus): I(x;z) crossed 0.1 nats on the beta {x['crossing']['beta']:.1f} "
        f"plateau and rose {x['crossing']['rise_second_half']:.2f} nats over its second half "
        f"(largest second-half rise of any plateau: {max(p['rise_second_half'] for p in x['plateaus']):.2f})"
        for t, x in details["settling"].items() if x["crossing"] is not None)
    cmd = f"python -m reproduce.ifp_speed --budget {budget}" + (" --no-train" if args.no_train else "")
    st, ll = details["dsprites"]["staircase"], details["dsprites"]["loglinear"]
    ratio = lambda d: "-" if spread(list(d.values())) is None else f"{spread(list(d.values())):.2f}"  # noqa: E731
    sd = details["settle"]["dsprites"]
    sd_ifps = [v["ifp"] if v != NOT_RUN else NOT_RUN for v in sd.values()]
    settle_spread = spread(sd_ifps)
    measured = [v for v in [*st.values(), *sd_ifps] if v != NOT_RUN]  # staircase and settle IFPs
    toy_spread = spread(list(details["toy"]["staircase"].values())[1:])  # plateaus of 30 steps do not settle
    rows = [
        row("DEFT whole-dataset IFP on dSprites (annealing test)", "~ 32 (§4.1, Fig. 4; beta 200 -> 0 over 100k steps)",
            f"staircase: {fmt(st, 'staircase')} steps; loglinear: {fmt(ll, 'loglinear')} steps{note}; settle "
            f"(window / most steps): " + ", ".join(f"{label(v['ifp']) if v != NOT_RUN else NOT_RUN} at {k}" for k, v in sd.items()),
            cmd, "cpu",
            "not run" if not measured else "reproduced" if all(v is not None and 32 / RATIO <= v <= 32 * RATIO for v in measured)
            else "not reproduced",
            "eoflow-fast ifp --data dsprites --unsupervised --steps 100000 --schedule staircase --device cuda"),
        row("DEFT dSprites IFP independent of the annealing speed (staircase)", "(definition: beta where I(x;z) exceeds 0.1 nats)",
            f"dSprites max/min over speeds: staircase {ratio(st)}, loglinear {ratio(ll)}; linear toy (beta* {details['toy_beta_star']:.1f}): staircase "
            f"{fmt(details['toy']['staircase'])}, loglinear {fmt(details['toy']['loglinear'])}"
            + (f"; settling: {settle}" if settle else ""), cmd, "cpu",
            dsprites_speed_verdict(spread(list(st.values())), toy_spread)),
        row("DEFT dSprites IFP independent of the annealing speed (settle schedule)",
            "(definition: beta where I(x;z) exceeds 0.1 nats)",
            "dSprites, window / most steps (cap = steps / 20 per plateau): "
            + "; ".join(f"{k}: {settle_label(v)}" for k, v in sd.items())
            + (f"; max/min {settle_spread:.2f}" if settle_spread is not None else "")
            + f"; linear toy (beta* {details['toy_beta_star']:.1f}): "
            + ", ".join(f"{label(v)} at {k}" for k, v in details["settle"]["toy"].items()),
            cmd, "cpu", dsprites_speed_verdict(settle_spread, spread(list(details["settle"]["toy"].values())))),
    ]
    print(write(f"ifp_speed_{budget}", rows, details, results_dir))


if __name__ == "__main__":
    main()
