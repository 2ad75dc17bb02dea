"""reproduce.bfvae_fa at toy sizes: the summary on planted evaluation results (including runs with
no non-flagged latent), the information bound and its inverse against closed forms, the ablation
ordering's tie rule, and the script end to end through the CLI at 20 steps."""
import json

import numpy as np
import pytest

from eoflow_fast.data.factor_analysis import factor_analysis
from eoflow_fast.vae.linear_gaussian import equal_block_kl
from reproduce import bfvae_fa, rows


def planted_result(kl, corr, beta=2.0, r2=0.99):
    kl = np.asarray(kl)
    flagged = np.flatnonzero(kl > 0.1).tolist()
    return {"kl_per_dim": kl.tolist(), "informative_dims": flagged, "beta": beta, "factor_r2": [r2] * len(corr[0]),
            "fdr": max(0, len(flagged) - 2) / max(len(flagged), 1), "abs_corr": np.asarray(corr).tolist()}


GOOD = ([2.0, 0.001, 2.5, 0.002], [[0.99, 0.0], [0.1, 0.1], [0.0, 0.98], [0.0, 0.0]])


def test_summary_counts_matched_discoveries_and_alignment():
    mixed = planted_result([2.0, 0.001, 2.5, 0.002], [[0.7, 0.6], [0.1, 0.1], [0.65, 0.3], [0.0, 0.0]])
    s = bfvae_fa.summarise([planted_result(*GOOD)], planted=2)
    assert s["all_found"] and s["max_fdr"] == 0 and s["max_fdr_matched"] == 0 and s["gap_testable"]
    assert s["min_informative_kl"]["median"] == 2.0 and s["max_other_kl"]["median"] == 0.002
    assert s["alignment"]["median"] == pytest.approx((0.99 + 0.98) / 2) and s["kept_minus_false"]["median"] == 2
    assert bfvae_fa.mixing(s) == ""
    m = bfvae_fa.summarise([mixed], planted=2)  # both latents load on factor 0: one is a false discovery
    assert m["max_fdr"] == 0 and m["max_fdr_matched"] == 0.5 and not m["all_found"]
    assert m["alignment"]["median"] == pytest.approx(0.7 / 2) and m["kept_minus_false"]["median"] == 0
    assert "mix factors" in bfvae_fa.mixing(m) and "as low as 0.65" in bfvae_fa.mixing(m)
    lost = [planted_result([2.0, 0.001, 2.5, 0.002], [[0.7, 0.6], [0.1, 0.1], [0.65, 0.3], [0.0, 0.0]], r2=0.4)]
    assert bfvae_fa.mixing(bfvae_fa.summarise(lost, planted=2)) == ""  # a factor is not encoded: not mixing


def test_factor_r2_is_one_for_an_encoded_factor_and_zero_for_an_unencoded_one():
    rng = np.random.default_rng(0)
    mu = rng.standard_normal((500, 3))
    design = np.c_[mu, np.ones(500)]
    noise = rng.standard_normal(500)
    orthogonal = noise - design @ np.linalg.lstsq(design, noise, rcond=None)[0]
    f = np.c_[2 * mu[:, 0] - mu[:, 1] + 3, orthogonal]
    np.testing.assert_allclose(bfvae_fa.factor_r2(mu, f), [1.0, 0.0], atol=1e-10)


def test_summary_reports_ranges_and_the_linear_gaussian_optimum():
    a = planted_result(*GOOD)
    b = planted_result([2.2, 0.001, 2.6, 0.004], GOOD[1])
    a["ideal_kl"] = b["ideal_kl"] = [2.7, 2.6, 0.0, 0.0]
    s = bfvae_fa.summarise([a, b], planted=2)
    assert s["min_informative_kl"] == {"median": 2.1, "min": 2.0, "max": 2.2, "runs": 2}
    assert s["max_other_kl"]["min"] == 0.002 and s["max_other_kl"]["max"] == 0.004
    assert bfvae_fa.ideal_range(s) == [2.6, 2.7] and s["per_run"][1]["kl_flagged"] == [2.6, 2.2]
    assert bfvae_fa.describe(s["min_informative_kl"], 2, "no latent flagged") == "2.10 (median, range 2.00-2.20)"
    assert bfvae_fa.gap_ok(s)  # 2.0 > 100 x 0.004
    assert bfvae_fa.ideal_kl("fa15", 1.0, 4) is None  # vanilla / factor: the optimum is unbounded
    assert bfvae_fa.ideal_range(bfvae_fa.summarise([planted_result(*GOOD)], planted=2)) is None


def test_no_non_flagged_latent_is_said_so_never_nan():
    """FA100 at D = q: a run that flags every latent has no "other" KL; the summary keeps None,
    the cell says "none", the gap test fails instead of passing on a NaN."""
    every = planted_result([2.0, 2.5], [[0.99, 0.0], [0.0, 0.98]])
    s = bfvae_fa.summarise([every], planted=2)
    assert s["max_other_kl"] is None and not s["gap_testable"] and not bfvae_fa.gap_ok(s)
    json.dumps(s, allow_nan=False)
    assert bfvae_fa.describe(s["max_other_kl"], 1, "every latent flagged") == "none (every latent flagged in all 1 seeds)"
    both = bfvae_fa.summarise([planted_result(*GOOD), every], planted=2)
    assert both["max_other_kl"]["runs"] == 1 and not bfvae_fa.gap_ok(both)
    text = bfvae_fa.describe(both["max_other_kl"], 2, "every latent flagged", "{:.1e}")
    assert text == "2.0e-03 (median, range 2.0e-03) in 1 of 2 seeds (every latent flagged in the others)"
    nothing = bfvae_fa.summarise([planted_result([0.001, 0.002], [[0.1, 0.0], [0.0, 0.1]])], planted=2)
    assert nothing["min_informative_kl"] is None and not bfvae_fa.gap_ok(nothing)
    r = bfvae_fa.data_row("fa15", {**both, "planted": 3}, 2, "toy")
    assert "nan" not in r["ours"] and "every latent flagged in the others" in r["ours"] and r["verdict"] == "not reproduced"


def test_latent_size_leaves_latents_that_can_stay_off():
    assert [bfvae_fa.latent_dim(d) for d in ("fa15", "fa24", "fa100")] == [10, 10, 20]
    assert all(bfvae_fa.latent_dim(d) > bfvae_fa.planted(d) for d in ("fa15", "fa24", "fa100"))


def test_block_information_is_the_gaussian_mutual_information():
    """I(x; f_k) = -1/2 log Var(f_k | x) = -1/2 log(1 - L_k^T C^{-1} L_k) on the whole table equals
    the per-block sum (the other blocks are independent of f_k)."""
    fa = factor_analysis("fa15")
    c_inv = np.linalg.inv(fa.correlation)
    expected = [-0.5 * np.log(1 - fa.loadings[:, k] @ c_inv @ fa.loadings[:, k]) for k in range(3)]
    np.testing.assert_allclose(bfvae_fa.block_information("fa15"), expected, rtol=1e-10)
    assert 3.0 < bfvae_fa.block_information("fa15").min() < bfvae_fa.block_information("fa15").max() < 3.2


def test_noise_variance_for_inverts_the_bound_and_the_beta_optimum():
    for kl, n, beta in ((8.0, 5, 2.0), (2.5, 6, 4.0), (1.0, 10, 1.5)):
        h = 1 - bfvae_fa.noise_variance_for(kl, n)
        assert 0.5 * np.log1p(n * h / (1 - h)) == pytest.approx(kl, rel=1e-9)
        assert equal_block_kl(n, 1 - bfvae_fa.noise_variance_for(kl, n, beta), beta) == pytest.approx(kl, rel=1e-9)
    assert bfvae_fa.noise_variance_for(8.0, 5) == pytest.approx(5.6e-7, rel=0.01)
    with pytest.raises(ValueError, match="beta"):
        bfvae_fa.noise_variance_for(8.0, 5, 5.0)


def summary_of(kept_minus_false, alignment):
    return {"kept_minus_false": bfvae_fa.over_runs(kept_minus_false), "alignment": bfvae_fa.over_runs(alignment),
            "max_fdr_matched": 0.0}


def test_ablation_ordering_never_calls_a_tie_a_win():
    bf = summary_of([3, 3, 3], [0.99, 0.98, 0.97])
    text, ahead = bfvae_fa.compare(bf, summary_of([2, 2, 3], [0.9, 0.9, 0.9]))
    assert ahead and text.startswith("ahead on kept - false (3 vs 2)")
    text, ahead = bfvae_fa.compare(bf, summary_of([3, 3, 3], [0.7, 0.8, 0.9]))
    assert ahead and "ahead on mean matched |corr|" in text and "separated" in text
    text, ahead = bfvae_fa.compare(bf, summary_of([3, 3, 3], [0.96, 0.975, 0.99]))
    assert not ahead and text.startswith("tie")
    text, ahead = bfvae_fa.compare(bf, summary_of([3, 3, 3], [0.99, 0.98, 0.97]))
    assert not ahead and text.startswith("tie")
    kept = {"vanilla": summary_of([2, 2, 2], [0.9] * 3), "beta": summary_of([3, 3, 3], [0.97, 0.98, 0.99]),
            "factor": summary_of([3, 3, 3], [0.5] * 3), "bfvae": bf}
    r = bfvae_fa.ablation_row(kept, 3, "toy")
    assert r["verdict"] == "not reproduced" and "vs beta: tie" in r["ours"]
    kept["beta"] = summary_of([3, 3, 2], [0.97, 0.98, 0.99])  # median 3: still a tie on kept - false
    assert bfvae_fa.ablation_row(kept, 3, "toy")["verdict"] == "not reproduced"
    kept["beta"] = summary_of([2, 2, 3], [0.97, 0.98, 0.99])
    assert bfvae_fa.ablation_row(kept, 3, "toy")["verdict"] == "partly"


def test_bfvae_fa_toy_budget_end_to_end(tmp_path):
    """The script through the CLI (train, eval --json) at 20 steps: rows for each table and the
    ablations, the trained KLs next to the linear-Gaussian optimum, no NaN in the JSON."""
    bfvae_fa.main(["--budget", "toy", "--run-root", str(tmp_path)])
    text = (tmp_path / "toy" / "repro_bfvae_fa_toy.json").read_text()
    payload = json.loads(text, parse_constant=lambda c: pytest.fail(f"{c} in the result JSON"))
    claims = [r["claim"] for r in payload["rows"]]
    assert any(c.startswith("bfVAE FA15") for c in claims) and any("ablation" in c for c in claims)
    assert all(r["verdict"] in rows.VERDICTS for r in payload["rows"])
    assert payload["details"]["fa15"]["latent_dim"] == 10 and payload["details"]["fa15"]["beta"] == 2.0
    assert "nan" not in (tmp_path / "toy" / "repro_bfvae_fa_toy.md").read_text()
