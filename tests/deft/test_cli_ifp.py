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


def test_ifp_cli_rejects_bad_flags(tmp_path, capsys):
    assert main(["ifp", "--factors", "7", "--out", str(tmp_path)]) == 2
    assert "argument --factors: expected indices in [0, 5)" in capsys.readouterr().err
    with pytest.raises(SystemExit) as info:  # a flag's range is checked at parse time
        main(["ifp", "--steps", "1", "--out", str(tmp_path)])
    assert info.value.code == 2 and "argument --steps: expected an integer >= 2" in capsys.readouterr().err
