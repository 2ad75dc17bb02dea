"""The EOFlow reproduction scripts: the PCA-limit measurement against closed forms (a planted PCA
solution and the same covariance rotated away from it), the summaries of the digits eval on a
planted table, and the toy budgets end to end (rows written, verdicts, the plot)."""
import json
import math

import pytest
import torch

from eoflow_fast.flows import ActNorm, Orthogonal, SequenceFlow
from eoflow_fast.flows.eoflow import EOFlow
from eoflow_fast.flows.evaluation import PCA
from reproduce import eoflow_compression, eoflow_entropy, eoflow_pca_limit, rows

STDS = (2.0, 0.7, 0.2)
SIGMA = 0.1


def planted_linear_flow(x: torch.Tensor, angle: float) -> EOFlow:
    """Decoder x = mu + U diag(s) R(angle) z with U, lambda the PCA of x, s = sqrt(lambda + sigma^2) and
    R a rotation by ``angle`` in the plane of the top two latents: the same Gaussian for every angle,
    the PCA solution only at angle 0."""
    pca = PCA(x)
    U = pca.components.clone()
    if torch.linalg.det(U) < 0:
        U[:, -1] = -U[:, -1]
    s = (pca.eigenvalues + SIGMA ** 2).sqrt()
    R = torch.eye(3, dtype=torch.float64)
    R[:2, :2] = torch.tensor([[math.cos(angle), -math.sin(angle)], [math.sin(angle), math.cos(angle)]])
    flow = SequenceFlow(Orthogonal(3), ActNorm(3), Orthogonal(3)).double()  # z = R^T diag(1/s) U^T (x - mu)
    with torch.no_grad():
        flow.blocks[0].rotation.weight = U.T
        flow.blocks[1].log_scale.copy_(-torch.log(s))
        flow.blocks[1].bias.copy_(-(U.T @ pca.mean) / s)
        flow.blocks[1].initialized.fill_(True)
        flow.blocks[2].rotation.weight = R.T
    model = EOFlow(flow, (3,), flat_input=True, lam=1.0, sigma=SIGMA, dequantize=False)
    return model.eval()


def test_pca_limit_measure_on_planted_flows():
    x, _ = eoflow_pca_limit.linear_gaussian(4096, STDS, seed=3)
    x_eval, _ = eoflow_pca_limit.linear_gaussian(256, STDS, seed=3, split="test")
    assert not torch.equal(x[:256], x_eval)  # held-out points
    pca_solution = eoflow_pca_limit.measure(planted_linear_flow(x, 0.0), x, x_eval)
    # linear flow: H_i = h(N(0,1)) + log s_i = 1/2 log(2 pi e (lambda_i + sigma^2)) exactly
    assert pca_solution["dH"] < 1e-9 and abs(pca_solution["mtc"]) < 1e-9
    assert min(pca_solution["abs_cos"]) > 1 - 1e-9 and eoflow_pca_limit.meets_bar(pca_solution)
    rotated = eoflow_pca_limit.measure(planted_linear_flow(x, math.pi / 4), x, x_eval)
    # columns (s0 u0 +- s1 u1)/sqrt 2 (the rotation is exact to ~1e-8): |J|^2 = (s0^2 + s1^2)/2 for both, cos to u0 = s0 / sqrt(s0^2 + s1^2)
    s2 = PCA(x).eigenvalues[:2] + SIGMA ** 2
    assert rotated["entropy"][0] == pytest.approx(0.5 * math.log(math.pi * math.e * float(s2.sum())), abs=1e-6)
    assert rotated["abs_cos"][0] == pytest.approx(float(s2[0].sqrt() / s2.sum().sqrt()), abs=1e-6)
    assert rotated["mtc"] > 0.1 and not eoflow_pca_limit.meets_bar(rotated)


def test_compression_and_denoising_summaries_on_a_planted_eval():
    ev = {"compression": [{"C": 1, "psnr_eoflow": 15.0, "psnr_pca": 14.0}, {"C": 4, "psnr_eoflow": 20.0, "psnr_pca": 19.5},
                          {"C": 8, "psnr_eoflow": 22.0, "psnr_pca": 23.0}, {"C": 64, "psnr_eoflow": "inf", "psnr_pca": "inf"}],
          "denoising": [{"sigma": 0.1, "C": 1, "psnr_eoflow": 15.0, "psnr_pca": 14.0},
                        {"sigma": 0.1, "C": 4, "psnr_eoflow": 21.0, "psnr_pca": 21.5}],
          "core_rule": [{"sigma": 0.1, "psnr_noisy": 20.0, "C_best_eoflow": 4, "psnr_best_eoflow": 21.0,
                         "C_auto_eoflow": 1, "psnr_auto_eoflow": 15.0, "C_best_pca": 4, "psnr_best_pca": 21.5,
                         "C_auto_pca": 4, "psnr_auto_pca": 21.5}]}
    comp = eoflow_compression.compression_summary(ev)
    assert comp["wins"] == [1, 4] and comp["loses"] == [8] and comp["per_C"][-1]["eoflow"] == math.inf
    den = eoflow_compression.denoising_summary(ev)["0.1"]
    assert den["wins"] == [1] and den["loses"] == [4] and den["gain_best_eoflow"] == 1.0 and den["gain_best_pca"] == 1.5
    assert den["gain_auto_eoflow"] == -5.0 and den["C_auto_pca"] == 4


def test_core_size_ranges_and_agreement():
    searched = [1, 2, 4, 6, 8, 12, 16]
    assert eoflow_compression.c_ranges([4, 6, 8, 16], searched) == "4-8, 16"
    assert eoflow_compression.c_ranges([], searched) == "none" and eoflow_compression.c_ranges([2], searched) == "2"
    text = eoflow_compression.agreement([{"wins": [2, 4, 6], "loses": [1]}, {"wins": [4, 6], "loses": [1, 2]}], searched)
    assert text == "EOFlow >= PCA in every seed at C 4-6, below in some seed at C 1-2"


def test_spearman_of_orders():
    assert eoflow_entropy.spearman([1, 2, 3, 4], [10, 20, 30, 40]) == pytest.approx(1.0)
    assert eoflow_entropy.spearman([1, 2, 3, 4], [4, 3, 2, 1]) == pytest.approx(-1.0)


def _rows(path):
    payload = json.loads(path.read_text())
    for r in payload["rows"]:
        assert set(r) == {*rows.COLUMNS, "gpu_command"} and r["verdict"] in rows.VERDICTS and r["budget"] == "cpu"
    return payload


def test_pca_limit_toy_budget(tmp_path):
    eoflow_pca_limit.main(["--budget", "toy", "--run-root", str(tmp_path)])
    payload = _rows(tmp_path / "toy" / "repro_eoflow_pca_limit_toy.json")
    assert [r["claim"].split(" (")[0] for r in payload["rows"]] == ["EOFlow: PCA limit", "EOFlow: lam = 0"]
    runs = payload["details"]["runs"]
    assert len(runs) == 4 and {(r["flow"], r["lam"]) for r in runs} == {(f, l) for f in ("linear", "coupling") for l in (0.0, 1.0)}
    linear = next(r for r in runs if r["flow"] == "linear" and r["lam"] == 1.0)
    expected = [0.5 * math.log(2 * math.pi * math.e * (s ** 2 + SIGMA ** 2)) for s in eoflow_pca_limit.BUDGETS["toy"]["stds"]]
    assert linear["expected"] == pytest.approx(expected, abs=0.15)  # sample vs population eigenvalues, n = 1024
    assert linear["dH"] < 0.05  # 300 full-batch steps suffice in 3-D


def test_digits_toy_budget_compression_and_entropy(tmp_path):
    eoflow_compression.main(["--budget", "toy", "--run-root", str(tmp_path)])
    comp = _rows(tmp_path / "toy" / "repro_eoflow_compression_toy.json")
    assert len(comp["rows"]) == 2 and set(comp["details"]["denoising"]["0"]) == {"0.05", "0.1", "0.2"}
    mtime = (tmp_path / "toy" / "digits_s0" / "eval.json").stat().st_mtime
    eoflow_entropy.main(["--budget", "toy", "--run-root", str(tmp_path)])  # reuses the run
    assert (tmp_path / "toy" / "digits_s0" / "eval.json").stat().st_mtime == mtime
    ent = _rows(tmp_path / "toy" / "repro_eoflow_entropy_toy.json")
    seed0 = ent["details"]["per_seed"]["0"]
    assert seed0["sorted_entropy"] == sorted(seed0["sorted_entropy"], reverse=True) and len(seed0["sorted_entropy"]) == 64
    assert seed0["floor"] == pytest.approx(0.5 * math.log(2 * math.pi * math.e * (0.05 ** 2 + 1 / (12 * 16 ** 2))))
    ev = json.loads((tmp_path / "toy" / "digits_s0" / "eval.json").read_text())
    assert seed0["top8_share"] == pytest.approx(ev["entropy_top_fraction"]["8"])  # the evaluation's own share
    assert (tmp_path / "toy" / "repro_eoflow_entropy_toy.png").stat().st_size > 1000
