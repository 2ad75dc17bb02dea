"""``eoflow-fast ifp`` end to end at a tiny size: files written, values consistent, bad flags exit 2."""
import json

import pytest

from eoflow_fast.cli.main import main


def test_ifp_cli_per_factor_and_unsupervised(tmp_path, tc_op):
    out = tmp_path / "f"
    assert main(["ifp", "--data", "dsprites", "--factors", "0", "--repeats", "2", "--steps", "4", "--mi-every", "2",
                 "--encoder", "lite", "--batch-size", "8", "--device", "cpu", "--out", str(out)]) == 0
    payload = json.loads((out / "ifp.json").read_text())
    assert list(payload["ifp"]) == ["shape"] and len(payload["ifp"]["shape"]) == 2
    run = payload["runs"]["shape"][0]
    assert len(run["betas"]) == len(run["kl"]) == 4 and run["mi_steps"] == [0, 2, 3]
    assert abs(run["betas"][0] - 200.0) < 1e-9 and abs(run["betas"][-1] - 1.0) < 1e-9
    assert (out / "ifp_histograms.png").exists() and (out / "annealing_shape.png").exists()
    out = tmp_path / "u"
    assert main(["ifp", "--data", "dsprites", "--unsupervised", "--num-points", "16", "--steps", "3",
                 "--encoder", "lite", "--device", "cpu", "--out", str(out)]) == 0
    assert (out / "annealing.png").exists() and len(json.loads((out / "ifp.json").read_text())["run"]["mi"]) == 2


def test_ifp_cli_settle_records_plateaus(tmp_path, tc_op, capsys):
    """--schedule settle at a cap of 4 steps per plateau (--steps 8, --levels 2) and a 2-step window:
    every plateau's steps and settled flag are in ifp.json, they add up to the steps run, and the
    console names the plateaus that hit the cap."""
    from eoflow_fast.deft import annealing as AN

    out = tmp_path / "s"
    assert main(["ifp", "--data", "dsprites", "--unsupervised", "--num-points", "16", "--steps", "8", "--levels", "2",
                 "--schedule", "settle", "--settle-window", "2", "--mi-every", "1", "--encoder", "lite",
                 "--device", "cpu", "--no-progress", "--out", str(out)]) == 0
    run = json.loads((out / "ifp.json").read_text())["run"]
    plateaus = run["plateaus"]
    assert [round(p["beta"], 9) for p in plateaus] == [200.0, 1.0] and sum(p["steps"] for p in plateaus) == len(run["betas"])
    assert all(2 <= p["steps"] <= 4 and p["settled"] == (p["rise"] <= AN.SETTLE_TOL) for p in plateaus)
    capped = sum(not p["settled"] for p in plateaus)
    assert f"2 run, {len(run['betas'])} steps, {capped} hit the cap of 4 steps" in capsys.readouterr().out


def test_ifp_cli_rejects_bad_flags(tmp_path, capsys):
    assert main(["ifp", "--factors", "7", "--out", str(tmp_path)]) == 2
    assert "argument --factors: expected distinct indices in [0, 5)" in capsys.readouterr().err
    with pytest.raises(SystemExit) as info:  # a flag's range is checked at parse time
        main(["ifp", "--steps", "1", "--out", str(tmp_path)])
    assert info.value.code == 2 and "argument --steps: expected an integer >= 2" in capsys.readouterr().err
    assert main(["ifp", "--unsupervised", "--schedule", "settle", "--steps", "400", "--settle-window", "25",
                 "--out", str(tmp_path)]) == 2
    assert "argument --settle-window: expected a multiple of --mi-every=10 from 20 to the plateau cap" in capsys.readouterr().err


@pytest.mark.parametrize("flags, message", [
    (["--beta-high", "1", "--beta-low", "200"], "argument --beta-high: expected >= --beta-low=200 (beta anneals down), got 1"),
    (["--schedule", "staircase", "--steps", "5"], "argument --levels: expected at most --steps=5 plateaus, got 20"),
    (["--factors", "0", "0"], "argument --factors: expected distinct indices in [0, 3)"),
])
def test_ifp_cli_refuses_settings_without_a_meaningful_ifp(tmp_path, capsys, flags, message):
    """Each ran before (a traceback after the data was built, or, for a repeated factor, every test
    counted twice: "2/2 froze" from one repeat)."""
    assert main(["ifp", "--data", "triangle", "--repeats", "1", "--out", str(tmp_path / "o"), *flags]) == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "o").exists()


@pytest.mark.parametrize("threshold", ["0", "0.01", "nan"])
def test_ifp_cli_threshold_must_exceed_the_collapse_level(tmp_path, capsys, threshold):
    """--threshold 0 ran and reported an IFP extrapolated from a value above the collapse level."""
    with pytest.raises(SystemExit) as info:
        main(["ifp", "--threshold", threshold, "--out", str(tmp_path)])
    assert info.value.code == 2 and "argument --threshold: expected a finite number in (0.01, inf)" in capsys.readouterr().err


IFP_SMALL = ["ifp", "--data", "dsprites", "--factors", "0", "2", "--steps", "4", "--mi-every", "2", "--encoder", "lite",
             "--batch-size", "8", "--device", "cpu", "--no-progress"]


def test_ifp_interrupted_run_continues_with_the_uninterrupted_results(tmp_path, tc_op, monkeypatch, capsys):
    """Each test is saved as it ends (ifp_tests.jsonl) and has its own seed: a run killed after two
    tests, run again, reruns only the rest and ends with the numbers of a run never interrupted;
    more --repeats reuse the tests already run; a folder of another setting is refused."""
    from eoflow_fast.deft import annealing as AN

    whole = tmp_path / "whole"
    assert main([*IFP_SMALL, "--repeats", "2", "--out", str(whole)]) == 0
    expected = json.loads((whole / "ifp.json").read_text())["runs"]

    cut = tmp_path / "cut"
    real, calls = AN.annealing_test, []

    def dies_on_third(*a, **kw):
        calls.append(1)
        if len(calls) == 3:
            raise KeyboardInterrupt
        return real(*a, **kw)

    monkeypatch.setattr(AN, "annealing_test", dies_on_third)
    with pytest.raises(KeyboardInterrupt):
        main([*IFP_SMALL, "--repeats", "2", "--out", str(cut)])
    assert not (cut / "ifp.json").exists() and len((cut / "ifp_tests.jsonl").read_text().splitlines()) == 3
    calls.clear()
    monkeypatch.setattr(AN, "annealing_test", lambda *a, **kw: (calls.append(1), real(*a, **kw))[1])
    assert main([*IFP_SMALL, "--repeats", "2", "--out", str(cut)]) == 0
    assert len(calls) == 2 and "2 finished test(s)" in capsys.readouterr().err
    assert json.loads((cut / "ifp.json").read_text())["runs"] == expected

    calls.clear()
    assert main([*IFP_SMALL, "--repeats", "3", "--out", str(cut)]) == 0  # one more repeat per factor
    more = json.loads((cut / "ifp.json").read_text())["runs"]
    assert len(calls) == 2 and {k: v[:2] for k, v in more.items()} == expected

    assert main([*IFP_SMALL, "--repeats", "2", "--lr", "1e-3", "--out", str(cut)]) == 2
    assert "holds the tests of another setting (lr)" in capsys.readouterr().err

    partial = cut / "ifp_tests.jsonl"  # a file written before the settle flags existed is still reused
    head, *tests = partial.read_text().splitlines()
    settings = json.loads(head)["settings"]
    for flag in ("settle_window", "settle_tol", "stop_after_freeze"):
        del settings[flag]
    partial.write_text("\n".join([json.dumps({"settings": settings}), *tests]) + "\n")
    calls.clear()
    assert main([*IFP_SMALL, "--repeats", "3", "--out", str(cut)]) == 0 and calls == []
    assert main([*IFP_SMALL, "--repeats", "3", "--settle-tol", "0.5", "--out", str(cut)]) == 2
    assert "another setting (settle_tol)" in capsys.readouterr().err
