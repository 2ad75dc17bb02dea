"""reproduce.triangle_toy (DEFT Fig. 14): the estimator's reference values on the toy, the rule on
matrices built from them (exact codes, a rotated position code, a collapsed encoder), the verdicts
on planted runs, and the script end to end at its toy budget."""
import json
import shutil

import numpy as np
import pytest

from reproduce import triangle_toy as tt


@pytest.fixture(scope="module")
def ref():
    return tt.reference_matrix()


def test_reference_values_of_the_estimator_on_the_toy(ref):
    # the table of the module docstring; the rule's thresholds are placed between these rows
    expected = {"posX": [0.85, 0.01, 0.35], "angle": [0.33, 0.33, 0.80], "posX+posY": [0.14, 0.14, 0.39],
                "item noise": [0.08, 0.08, 0.09]}
    for name, row in expected.items():
        np.testing.assert_allclose(ref[name], row, atol=0.015, err_msg=name)
    # an exact orientation code is "low" in each coordinate, every position code is below "high" in orientation
    assert ref["angle"][0] < tt.LOW and ref["angle"][1] < tt.LOW and ref["angle"][2] > tt.HIGH
    assert ref["posX"][2] < tt.HIGH and ref["posX+posY"][2] < tt.HIGH and ref["posX"][0] > tt.HIGH


def test_judge_exact_codes_find_position_and_orientation(ref):
    pos_y = ref["posX"][[1, 0, 2]]  # posY's code: posX's row with the coordinates swapped
    m = np.stack([ref["posX"], pos_y, ref["angle"], ref["item noise"]])
    v = tt.judge(m, [3.0, 3.0, 2.5, 0.001])
    assert v == {"informative": [0, 1, 2], "posX": 0, "posY": 1, "position": True, "orientation": 2}


def test_judge_rotated_position_code_isolates_nothing(ref):
    # the beta-TCVAE state right after leaving the collapse: both coordinates in two latents turned 45 deg
    m = np.stack([ref["posX+posY"], ref["posX+posY"], ref["item noise"], ref["item noise"]])
    v = tt.judge(m, [3.3, 3.4, 0.05, 0.5])
    assert v["informative"] == [0, 1, 3]
    assert v["posX"] is None and v["posY"] is None and not v["position"] and v["orientation"] is None


def test_judge_needs_informative_latents_and_low_position(ref):
    pos_y = ref["posX"][[1, 0, 2]]
    m = np.stack([ref["posX"], pos_y, ref["angle"], ref["item noise"]])
    # a collapsed encoder: the same matrix (histogram binning is scale free) with KL ~ 0 everywhere
    collapsed = tt.judge(m, [0.002, 0.001, 0.002, 0.001])
    assert collapsed["informative"] == [] and not collapsed["position"] and collapsed["orientation"] is None
    # an orientation latent that also carries 0.45 of posX is not orientation "on its own"
    mixed = m.copy()
    mixed[2, 0] = 0.45
    assert tt.judge(mixed, [3.0, 3.0, 2.5, 0.001])["orientation"] is None
    with pytest.raises(ValueError, match="judge: m must be"):
        tt.judge(m[:, :2], [1.0] * 4)


def test_escape_step_is_the_first_record_above_one_nat():
    history = [(0, [0.01, 0.02]), (100, [0.3, 0.4]), (200, [0.6, 0.5]), (300, [3.0, 3.0])]
    assert tt.escape_step(history) == 200
    assert tt.escape_step(history[:2]) is None


def test_summary_verdicts_on_planted_runs(ref):
    pos_y = ref["posX"][[1, 0, 2]]
    iso = {"nmi_matrix": np.stack([ref["posX"], pos_y, ref["angle"], ref["item noise"]]).tolist(),
           "kl_per_dim": [3.0, 3.0, 2.5, 0.001], "escape_step": 5600}
    turned = [ref["posX+posY"], ref["posX+posY"], ref["item noise"], ref["item noise"]]
    rotated = {"nmi_matrix": np.stack(turned).tolist(),
               "kl_per_dim": [3.3, 3.4, 0.05, 0.5], "escape_step": 5700}
    b = tt.BUDGETS["cpu"]
    rows = tt.summary_rows({"betatcvae": [(0, rotated)], "deft": [(0, iso)]}, b, "cmd")
    assert [r["verdict"] for r in rows] == ["partly", "reproduced"]
    assert "DEFT 1/1 runs" in rows[1]["ours"] and "beta-TCVAE 0/1 runs" in rows[1]["ours"]
    assert "from step 5700" in rows[0]["ours"]
    rows = tt.summary_rows({"betatcvae": [(0, iso)], "deft": [(0, iso)]}, b, "cmd")
    assert [r["verdict"] for r in rows] == ["reproduced", "not reproduced"]
    rows = tt.summary_rows({"betatcvae": [(0, None)], "deft": [(0, iso)]}, b, "cmd")
    assert [r["verdict"] for r in rows] == ["not run"]


def test_triangle_toy_budget_end_to_end(tmp_path):
    tt.main(["--budget", "toy", "--run-root", str(tmp_path)])
    payload = json.loads((tmp_path / "toy" / "repro_triangle_toy.json").read_text())
    assert len(payload["rows"]) == 2
    assert all(r["verdict"] in ("reproduced", "partly", "not reproduced") for r in payload["rows"])
    for method in ("betatcvae", "deft"):
        r = payload["details"]["runs"][method]["0"]
        m, kl = np.asarray(r["nmi_matrix"]), np.asarray(r["kl_per_dim"])
        assert m.shape == (4, 3) and np.all((m >= 0) & (m <= 1 + 1e-6)) and kl.shape == (4,) and np.all(kl >= 0)
        assert r["position"] == tt.judge(m, kl)["position"]
    assert (tmp_path / "toy" / "repro_triangle_toy.png").stat().st_size > 1000
    # a second call reuses the cached evaluation instead of training again
    tt.main(["--budget", "toy", "--run-root", str(tmp_path), "--no-train"])


def test_triangle_toy_reuses_the_json_and_resumes_an_unfinished_run(tmp_path, monkeypatch, ref):
    """Seeds 0 and 1 at the toy budget with seed 0 of both methods planted in the results JSON and
    no seed-0 folders (the committed CPU result on another machine): only seed 1 trains, DEFT's
    from a run left at half its steps, which the script resumes to the one-leg run's result; then
    everything again from the JSON alone."""
    b = dict(tt.BUDGETS["toy"], seeds=[0, 1])
    monkeypatch.setitem(tt.BUDGETS, "toy", b)
    toy = tmp_path / "toy"
    toy.mkdir()
    pos_y = ref["posX"][[1, 0, 2]]
    planted = {"betatcvae": {"nmi_matrix": np.stack([ref["posX+posY"], ref["posX+posY"], ref["item noise"],
                                                     ref["item noise"]]).tolist(),
                             "kl_per_dim": [3.3, 3.4, 0.05, 0.5], "escape_step": 5700},
               "deft": {"nmi_matrix": np.stack([ref["posX"], pos_y, ref["angle"], ref["item noise"]]).tolist(),
                        "kl_per_dim": [3.0, 3.0, 2.5, 0.001], "escape_step": 2200}}
    path = toy / "repro_triangle_toy.json"
    path.write_text(json.dumps({"details": {"budget": b, "runs": {m: {"0": r, "1": None} for m, r in planted.items()}}}))
    assert tt.previous(toy, "toy", b) == {m: {"0": r} for m, r in planted.items()}
    assert tt.previous(toy, "toy", dict(b, steps=40)) == {}  # other steps: not reused

    half = dict(b, steps=b["steps"] // 2)
    tt.run_cli(tt.train_args("deft", half, 1, toy / "deft_s1"))
    assert not (toy / "deft_s1" / f"ckpt-{b['steps']:08d}.pt").exists()
    tt.main(["--budget", "toy", "--run-root", str(tmp_path)])
    assert not (toy / "betatcvae_s0").exists() and not (toy / "deft_s0").exists()
    assert (toy / "betatcvae_s1" / f"ckpt-{b['steps']:08d}.pt").exists()
    payload = json.loads(path.read_text())
    runs = payload["details"]["runs"]
    for m, r in planted.items():
        assert {k: runs[m]["0"][k] for k in tt.RESULT_KEYS} == r
        assert runs[m]["1"] is not None
    assert runs["deft"]["0"]["orientation"] == 2 and runs["betatcvae"]["0"]["orientation"] is None
    own = {m: sum(runs[m][s]["orientation"] is not None for s in ("0", "1")) for m in planted}
    assert f"beta-TCVAE {own['betatcvae']}/2 runs; DEFT {own['deft']}/2 runs" in payload["rows"][1]["ours"]

    fresh = tmp_path / "deft_s1_one_leg"
    tt.run_cli(tt.train_args("deft", b, 1, fresh))
    tt.evaluate(fresh, b)
    cached = [json.loads((d / "triangle_eval.json").read_text()) for d in (fresh, toy / "deft_s1")]
    assert cached[0] == cached[1]  # resume is bitwise: NMI, KL and KL history of the one-leg run

    def no_cli(args):
        raise AssertionError(f"ran eoflow-fast {args}")

    monkeypatch.setattr(tt, "run_cli", no_cli)
    for m in planted:
        shutil.rmtree(toy / f"{m}_s1")
    tt.main(["--budget", "toy", "--run-root", str(tmp_path)])  # all four runs from the JSON
    assert json.loads(path.read_text())["rows"] == payload["rows"]
