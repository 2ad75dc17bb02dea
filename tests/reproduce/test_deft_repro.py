"""The DEFT reproduction scripts (IFP per factor, IFP settling, stage 4): their summaries on planted
inputs, and each script end to end at its toy budget (a few CLI steps). The triangle toy has
test_triangle_toy.py."""
import json
import math

import numpy as np

from reproduce import ifp_factors, ifp_speed

SEPARATED = {"shape": [50.0, 60.0, 55.0, 58.0], "scale": [100.0, 110.0, 120.0, 105.0],
             "orientation": [5.0, 6.0, 7.0, None], "posX": [150.0, 160.0, 170.0, 165.0],
             "posY": [155.0, 165.0, 175.0, 160.0]}


def test_ifp_factors_summary_counts_regions_and_splits():
    s = ifp_factors.summarise(SEPARATED)
    assert s["lowest"] == "orientation" and s["lowest_clean"]
    assert s["stats"]["orientation"]["froze"] == 3 and s["stats"]["orientation"]["median"] == 6.0
    assert [sorted(g) for g in s["iqr_regions"]] == [["posX", "posY"], ["scale"], ["shape"], ["orientation"]]
    assert all(v == [] for v in s["splits"].values())
    rows = ifp_factors.rows_for(s, ifp_factors.BUDGETS["cpu"], "cmd")
    assert [r["verdict"] for r in rows] == ["reproduced", "reproduced"]
    # orientation overlapping shape: the median is still lowest, the IQRs overlap, beta 30 splits both
    mixed = dict(SEPARATED, orientation=[20.0, 40.0, 45.0, 25.0], shape=[35.0, 60.0, 28.0, 58.0])
    m = ifp_factors.summarise(mixed)
    assert m["lowest"] == "orientation" and not m["lowest_clean"]
    assert sorted(m["splits"]["30.0"]) == ["orientation", "shape"]
    assert len(m["iqr_regions"]) == 3
    assert [r["verdict"] for r in ifp_factors.rows_for(m, ifp_factors.BUDGETS["cpu"], "cmd")] == ["partly", "partly"]


def test_plateau_settling_on_planted_curve():
    # 2 plateaus of 100 steps, I measured every 10 steps: the first settles (flat end), the second
    # still rises by 0.5 nats over its second half
    steps = list(range(0, 200, 10)) + [99, 199]
    mi = {s: (0.0 if s < 100 else 0.01 * (s - 100)) for s in steps}
    steps = sorted(set(steps))
    run = {"mi_steps": steps, "mi": [mi[s] for s in steps], "betas": [200.0] * 100 + [100.0] * 100}
    rows = ifp_speed.plateau_settling(run, steps=200, levels=2)
    assert [r["beta"] for r in rows] == [200.0, 100.0]
    assert rows[0]["rise_second_half"] == 0.0 and math.isclose(rows[1]["rise_second_half"], 0.99 - 0.5, abs_tol=1e-9)


def test_ifp_factors_toy_budget_end_to_end(tmp_path):
    ifp_factors.main(["--budget", "toy", "--run-root", str(tmp_path)])
    payload = json.loads((tmp_path / "toy" / "repro_ifp_factors_toy.json").read_text())
    assert [r["claim"].split(":")[0] for r in payload["rows"]] == ["DEFT IFP per factor on dSprites",
                                                                   "DEFT dSprites IFP distributions almost separable (Fig. 9, Table 2 G = 4)"]
    assert set(payload["details"]["ifp"]) == {"posX", "orientation"}
    assert all(len(v) == 2 for v in payload["details"]["ifp"].values())
    assert (tmp_path / "toy" / "repro_ifp_factors_toy.png").stat().st_size > 1000


def test_deft_stage4_merge_rule_and_budget_breakdown():
    from reproduce import deft_stage4

    nmi = np.zeros((4, 5))
    nmi[1, 0], nmi[1, 2], nmi[2, 2] = 0.6, 0.5, 0.3  # z1 tops shape and orientation
    assert deft_stage4.merged(nmi.tolist()) == {"top_latent": {"shape": 1, "orientation": 1},
                                                "encoded": {"shape": True, "orientation": True}, "merged": True}
    nmi[2, 2] = 0.7
    assert not deft_stage4.merged(nmi.tolist())["merged"]
    nmi[:, 2] = 0.01  # orientation encoded nowhere: argmax over noise merges with nothing
    nmi[1, 2] = 0.02
    assert deft_stage4.merged(nmi.tolist())["encoded"]["orientation"] is False
    assert not deft_stage4.merged(nmi.tolist())["merged"]


def test_deft_stage4_group_uptake_splits_new_and_earlier_latents():
    from reproduce import deft_stage4

    nmi = np.zeros((12, 5))
    nmi[4, 0], nmi[10, 0], nmi[11, 3] = 0.19, 0.16, 0.4  # shape in an earlier latent and in the new group
    up = deft_stage4.group_uptake(nmi.tolist(), k=3)
    assert up["shape"] == {"new": 0.16, "earlier": 0.19} and up["posX"] == {"new": 0.4, "earlier": 0.0}
    rows = deft_stage4.budget_breakdown()  # the committed stage runs: 2 + 4 + 2 of them
    assert [r["stage_steps"] for r in rows] == [1500, 3000, 6000] and [r["runs"] for r in rows] == [2, 4, 2]
    assert all(0 <= r["fell"] <= r["runs"] for r in rows)


def test_ifp_speed_verdict_is_dsprites_once_it_ran():
    from reproduce import ifp_speed

    r = ifp_speed.RATIO
    assert ifp_speed.dsprites_speed_verdict(2.18, 1.1) == "not reproduced"  # the toy no longer stands in
    assert ifp_speed.dsprites_speed_verdict(r * 0.99, None) == "reproduced"
    assert ifp_speed.dsprites_speed_verdict(None, 1.1) == "partly"
    assert ifp_speed.dsprites_speed_verdict(None, 2.0) == "not reproduced"


def test_ifp_speed_settle_label_names_capped_plateaus_and_missing_runs(tmp_path):
    from reproduce import ifp_speed

    run = {"ifp": 142.2, "steps_used": 600, "cap": 400,
           "plateaus": [{"beta": 200.0, "steps": 100, "settled": True}, {"beta": 151.3, "steps": 100, "settled": True},
                        {"beta": 114.5, "steps": 400, "settled": False}]}
    assert ifp_speed.settle_label(run) == "142.2 (600 steps, 1 of 3 plateaus capped: beta 114.5)"
    assert ifp_speed.settle_label({**run, "ifp": None, "plateaus": run["plateaus"][:2]}) == \
        "none (600 steps, 0 of 2 plateaus capped)"
    assert ifp_speed.settle_label(ifp_speed.NOT_RUN) == ifp_speed.NOT_RUN
    assert ifp_speed.dsprites_settle(100, 8000, 10, tmp_path / "missing", train=False) == ifp_speed.NOT_RUN


def test_deft_stage4_group_size_toy_budget_reuses_runs_and_json(tmp_path, monkeypatch):
    """The K study at the toy budget next to a planted branch study (its JSON entry is reused, so
    only the K = 1 run trains), then again from the JSON, from the run folder and with --no-train."""
    import pytest

    from reproduce import deft_stage4

    toy, b = tmp_path / "toy", deft_stage4.BUDGETS["toy"]
    toy.mkdir()
    nmi3 = np.zeros((12, 5))
    nmi3[5, 0] = 0.2
    nmi4 = nmi3.copy()
    nmi4[10, 0] = 0.15  # the stage-4 group takes up shape next to latent 5

    def ev(mig, shape_mig, nmi):
        return {"mig": mig, "mig_per_factor": [shape_mig, 0.0, 0.0, 0.0, 0.0], "nmi_matrix": nmi.tolist()}

    branch = {"stage3": ev(0.25, 0.15, nmi3), **{v: ev(0.125, 0.0625, nmi4) for v in deft_stage4.VARIANTS}}
    path = toy / "repro_deft_stage4_toy.json"
    path.write_text(json.dumps({"details": {"budget": b, "seeds": {"0": branch}}}))
    assert deft_stage4.previous(toy, "toy", dict(b, stage_steps=5)) == {}  # other steps per stage: not reused

    deft_stage4.main(["--budget", "toy", "--run-root", str(tmp_path)])
    assert not (toy / "base_s0").exists() and (toy / "k1_s0" / "ckpt-00000016.pt").exists()
    payload = json.loads(path.read_text())
    sizes, runs = payload["details"]["group_size"], payload["details"]["group_size_runs"]["1"]["0"]
    assert set(sizes) == {"1", "3"}
    assert sizes["3"]["0"] == {"stage3_mig": 0.25, "stage4_mig": 0.125, "change": -0.125, "shape_change": -0.0875,
                               "shape_uptake": {"new": 0.15, "earlier": 0.2},
                               "top_uptake": {"factor": "shape", "new": 0.15, "earlier": 0.2, "mig_change": -0.0875},
                               "largest_fall": {"factor": "shape", "mig_change": -0.0875}}
    assert np.asarray(runs["stage4"]["nmi_matrix"]).shape == (4, 5)
    assert np.allclose(runs["stage3"]["nmi_matrix"][3], 0.0, atol=1e-12)  # stage 3: the fourth encoder is still off
    assert sizes["1"]["0"]["change"] == runs["stage4"]["mig"] - runs["stage3"]["mig"]
    assert sizes["1"]["0"]["shape_uptake"]["new"] == runs["stage4"]["nmi_matrix"][3][0]
    assert payload["rows"][1]["verdict"] == "partly"
    assert "K=1 (new group: latent 3): seed 0 MIG" in payload["rows"][1]["ours"]

    def no_cli(args):
        raise AssertionError(f"ran eoflow-fast {args}")

    monkeypatch.setattr(deft_stage4, "run_cli", no_cli)
    deft_stage4.main(["--budget", "toy", "--run-root", str(tmp_path)])  # everything from the JSON
    assert json.loads(path.read_text())["rows"] == payload["rows"]
    again = json.loads(path.read_text())
    del again["details"]["group_size_runs"]
    path.write_text(json.dumps(again))
    with pytest.raises(SystemExit, match="K=1 seed 0"):
        deft_stage4.main(["--budget", "toy", "--run-root", str(tmp_path), "--no-train"])
    deft_stage4.main(["--budget", "toy", "--run-root", str(tmp_path)])  # the K run from its folder's cached evaluations
    assert json.loads(path.read_text())["details"]["group_size"] == payload["details"]["group_size"]
    deft_stage4.main(["--budget", "toy", "--run-root", str(tmp_path), "--no-train"])
    rows = json.loads(path.read_text())["rows"]
    assert [r["ours"] for r in rows] == [r["ours"] for r in payload["rows"]]
    assert rows[1]["command"] == "python -m reproduce.deft_stage4 --budget toy --no-train"
