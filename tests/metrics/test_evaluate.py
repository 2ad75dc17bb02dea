"""Dataset-level ``evaluate``: shared draws, keyword routing, label-free callables, the report files."""
import json

import numpy as np
import pytest

from eoflow_fast import metrics
from metric_fakes import GridData, identity_representation

SMALL = {"num_train": 300, "num_test": 200}


def test_shared_draws_equal_separate_runs():
    data = GridData()
    shared = metrics.evaluate(["mig", "nmi", "modularity", "sap"], data, identity_representation, 0, **SMALL)
    from eoflow_fast.metrics.mig import compute_mig
    from eoflow_fast.metrics.modularity import compute_modularity_explicitness
    from eoflow_fast.metrics.sap import compute_sap
    alone = compute_mig(data, identity_representation, np.random.RandomState(0), num_train=300)
    assert shared["mig"]["mig"] == alone["mig"]
    alone = compute_modularity_explicitness(data, identity_representation, np.random.RandomState(0), **SMALL)
    assert shared["modularity"]["explicitness_score_test"] == alone["explicitness_score_test"]
    alone = compute_sap(data, identity_representation, np.random.RandomState(0), **SMALL)
    assert shared["sap"]["sap"] == alone["sap"]
    assert shared["nmi"]["nmi1_mean"] - shared["nmi"]["nmi2_mean"] == pytest.approx(shared["mig"]["mig"], abs=1e-12)
    assert shared["mig"]["mig"] > 0.9  # identity codes of the grid factors


def test_keyword_routing_and_errors():
    data = GridData()
    out = metrics.evaluate("mig,unsupervised", data, identity_representation, 0, num_train=200,
                           mig={"num_bins": 5})
    assert out["mig"]["mi_matrix"].shape == (3, 3)
    with pytest.raises(TypeError, match="no metric takes the keyword 'num_trian'"):
        metrics.evaluate(["mig"], data, identity_representation, 0, num_trian=10)
    with pytest.raises(TypeError, match="metric 'mig' takes no parameter"):
        metrics.evaluate(["mig"], data, identity_representation, 0, mig={"num_test": 10})
    with pytest.raises(ValueError, match="unknown metric 'migg'"):
        metrics.evaluate(["migg"], data, identity_representation, 0)
    with pytest.raises(TypeError, match="needs decode_fn"):
        metrics.evaluate(["fvh_lt"], data, identity_representation, 0)
    assert metrics.parse_metric_names("default") == list(metrics.DEFAULT_METRICS)


def test_label_free_metrics_and_report(tmp_path):
    import torch
    data = GridData()
    weights = np.random.RandomState(1).randn(3, 7)

    def decode_fn(z):
        return np.asarray(z) @ weights

    def encoder_fn(obs):
        mu = identity_representation(obs)
        return mu, np.full_like(mu, np.log(0.01))

    def jacobian_fn(z):
        return torch.tensor(np.tile(weights.T, (len(z), 1, 1)))

    out = metrics.evaluate(["nmi", "separation", "flow"], data, identity_representation, 0, out_dir=tmp_path,
                           num_train=300, num_points=300, decode_fn=decode_fn, encoder_fn=encoder_fn,
                           jacobian_fn=jacobian_fn)
    assert set(out) == {"nmi", "dbsr_ls", "fvh_lt", "informative", "separation", "flow"}
    np.testing.assert_allclose(out["fvh_lt"]["variance"], weights ** 2 * np.linspace(-3, 3, 11).var(), rtol=1e-5)
    assert out["informative"]["num_informative"] == 3
    assert 0.0 <= out["separation"]["separation_index"] <= 1.0
    np.testing.assert_allclose(out["flow"]["mpmi"], metrics.mpmi(jacobian_fn(np.zeros((1, 3)))).numpy(), atol=1e-12)
    saved = json.loads((tmp_path / "metrics.json").read_text())["metrics"]
    assert saved["nmi"]["nmi1_sum"] == pytest.approx(out["nmi"]["nmi1_sum"])
    for name in ("nmi_nmi_matrix", "fvh_lt_variance", "dbsr_ls_theta", "flow_mpmi"):
        assert (tmp_path / f"{name}.png").stat().st_size > 1000
    table = metrics.format_table(out)
    assert "nmi.nmi1_sum" in table and "separation.separation_index" in table


def test_eval_cli_helpers():
    import argparse
    parser = argparse.ArgumentParser()
    metrics.add_eval_args(parser)
    args = parser.parse_args(["--metrics", "mig,dci", "--num-train", "100"])
    assert metrics.eval_kwargs(args) == {"names": ["mig", "dci"], "rng": 0, "num_train": 100}


def test_write_report_keeps_earlier_metrics_of_the_same_weights(tmp_path):
    from eoflow_fast.metrics.report import write_report

    source = {"step": 4, "checkpoint": None, "weights": "ab" * 32}
    write_report({"informative": {"fdr": 0.0}, "mig": {"mig": 0.1}}, tmp_path, source=source)
    write_report({"mig": {"mig": 0.3}, "dci": {"disentanglement": 0.5}}, tmp_path,
                 source={**source, "checkpoint": "ckpt-00000004.pt"})
    saved = json.loads((tmp_path / "metrics.json").read_text())
    assert saved["metrics"] == {"informative": {"fdr": 0.0}, "mig": {"mig": 0.3}, "dci": {"disentanglement": 0.5}}
    assert saved["checkpoint"] == {**source, "checkpoint": "ckpt-00000004.pt"}  # the file name learnt later
    assert saved["label"] == "step 4, weights " + "ab" * 6 and saved["earlier"] == {}


