"""The noise-floor core rule: C = #{i : H_i > 0.5 log(2 pi e sigma^2)}, for EOFlow and PCA, on cases
whose entropies are known in closed form."""
import math

import pytest
import torch

from eoflow_fast.flows import ActNorm, SequenceFlow
from eoflow_fast.flows.eoflow import GAUSS_ENTROPY, EOFlow, core_above_floor, noise_entropy_floor
from eoflow_fast.flows.evaluation import PCA

STDS = torch.tensor([1.0, 0.2, 0.04, 0.01], dtype=torch.float64)  # sigma = 0.05 drowns the last two


def test_floor_is_the_gaussian_entropy_of_the_noise():
    assert noise_entropy_floor(0.05) == pytest.approx(GAUSS_ENTROPY + math.log(0.05), abs=1e-12)
    with pytest.raises(ValueError, match="sigma must be > 0"):
        noise_entropy_floor(0.0)


@pytest.mark.parametrize("sigma, expected", [(0.05, 2), (0.3, 1), (0.02, 3), (0.001, 4), (5.0, 1)])
def test_core_above_floor_counts_gaussian_entropies(sigma, expected):
    entropy = 0.5 * torch.log(2 * math.pi * math.e * STDS ** 2)  # h(N(0, s^2)) > floor  <=>  s > sigma
    assert core_above_floor(entropy, sigma) == expected  # at least 1 even when every dim is drowned


def test_eoflow_core_from_a_linear_flow():
    """ActNorm with log_scale = -log s: decoder x = z * s, so H_i = h(N(0,1)) + log s_i exactly."""
    flow = SequenceFlow(ActNorm(4)).double()
    with torch.no_grad():
        flow.blocks[0].log_scale.copy_(-torch.log(STDS[[2, 0, 3, 1]]))  # a shuffled order
        flow.blocks[0].initialized.fill_(True)
    model = EOFlow(flow, (4,), flat_input=True, sigma=0.0, dequantize=False)
    ent = model.explained_entropy(torch.randn(32, 4, dtype=torch.float64))
    torch.testing.assert_close(ent["entropy"], GAUSS_ENTROPY + torch.log(STDS[[2, 0, 3, 1]]))
    model.set_order(ent["entropy"])
    assert model.core_above_noise(0.05) == 2 and model.latent_order[:2].tolist() == [1, 3]
    assert model.core_above_noise(0.02) == 3


def test_pca_core_from_component_variances():
    gen = torch.Generator().manual_seed(0)
    Q, _ = torch.linalg.qr(torch.randn(4, 4, generator=gen, dtype=torch.float64))
    x = torch.randn(20000, 4, generator=gen, dtype=torch.float64)
    x = ((x - x.mean(0)) / x.std(0, unbiased=False) * STDS) @ Q.T  # sample variances ~ STDS^2
    pca = PCA(x)
    torch.testing.assert_close(pca.eigenvalues.sqrt(), STDS, rtol=0.05, atol=0.0)
    assert pca.core_above_noise(0.05) == 2 and pca.core_above_noise(0.02) == 3 and pca.core_above_noise(0.3) == 1


def test_evaluation_table_marks_exact_reconstruction_and_reports_the_rule(tmp_path, capsys):
    import json

    from eoflow_fast.flows.evaluation import evaluate_model

    flow = SequenceFlow(ActNorm(4)).double()
    with torch.no_grad():
        flow.blocks[0].log_scale.copy_(-torch.log(STDS))
        flow.blocks[0].initialized.fill_(True)
    model = EOFlow(flow, (4,), flat_input=True, sigma=1e-3, dequantize=False)  # linear: H independent of x
    gen = torch.Generator().manual_seed(1)
    items = list(torch.randn(64, 4, generator=gen, dtype=torch.float64) * STDS)
    report = evaluate_model(model, items, items, tmp_path, core_sizes=[1, 2, 4], eval_samples=64,
                            entropy_samples=64, plots=False)
    full = report["compression"][-1]
    assert full["C"] == 4 and full["psnr_pca"] == math.inf  # PCA at C = D is the identity, not a 200 dB cap
    assert capsys.readouterr().out == ""  # the library prints nothing; the table is RUN_DIR/eval.txt
    assert "exact" in (tmp_path / "eval.txt").read_text()
    assert json.loads((tmp_path / "eval.json").read_text())["compression"][-1]["psnr_pca"] == "inf"
    rule = {r["sigma"]: r for r in report["core_rule"]}
    assert rule[0.05]["C_auto_eoflow"] == 2 and rule[0.2]["C_auto_eoflow"] == 1  # stds 1, 0.2, 0.04, 0.01
    assert rule[0.05]["C_best_eoflow"] in (1, 2)


def test_pca_above_its_rank_is_not_reported_under_c(tmp_path):
    """Fitted on 3 items, PCA determines 2 components: C = 3 has no PCA number ("n/a"), C = 2 has one,
    C = D is exact; by default the fit takes one item more than the largest C < D."""
    from eoflow_fast.flows.evaluation import evaluate_model

    flow = SequenceFlow(ActNorm(4)).double()
    with torch.no_grad():
        flow.blocks[0].log_scale.copy_(-torch.log(STDS))
        flow.blocks[0].initialized.fill_(True)
    model = EOFlow(flow, (4,), flat_input=True, sigma=1e-3, dequantize=False)
    gen = torch.Generator().manual_seed(2)
    items = list(torch.randn(64, 4, generator=gen, dtype=torch.float64) * STDS)
    report = evaluate_model(model, items, items, tmp_path, core_sizes=[2, 3, 4], eval_samples=64,
                            entropy_samples=64, pca_samples=3, plots=False)
    pca = {r["C"]: r["psnr_pca"] for r in report["compression"]}
    assert pca[3] is None and math.isfinite(pca[2]) and pca[4] == math.inf
    assert all(r["psnr_pca"] is None and r["gain_pca"] is None for r in report["denoising"] if r["C"] == 3)
    assert "n/a" in (tmp_path / "eval.txt").read_text()
    with pytest.raises(ValueError, match="exceeds the rank 2"):
        PCA(torch.stack(items[:3])).truncate(torch.stack(items), 3)
    full = evaluate_model(model, items, items, tmp_path, core_sizes=[2, 3, 4], eval_samples=64,
                          entropy_samples=64, plots=False)
    assert all(r["psnr_pca"] is not None for r in full["compression"])
