"""Discretisation and the batched discrete MI matrix against per-pair numpy / scikit-learn loops."""
import numpy as np
import pytest
import torch
from sklearn.metrics import mutual_info_score

from eoflow_fast.metrics import discrete_mi, discrete_entropy, discrete_mi_matrix, histogram_discretize, mutual_info_matrix

import dl_reference as ref
from metric_fakes import entangled_codes


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_histogram_discretize_matches_numpy(rs, dtype):
    codes = (rs.randn(1000, 5) * rs.uniform(0.1, 10, size=5)).astype(dtype)
    codes[:, 3] = 1.5  # constant column: np.histogram's range [v - 0.5, v + 0.5]
    codes[:7, 4] = codes[:, 4].max()  # ties at the max land in the last bin
    got = histogram_discretize(codes).numpy()
    want = ref.histogram_discretize(codes.T).T - 1
    np.testing.assert_array_equal(got, want)
    assert got.min() >= 0 and got.max() <= 19


def test_histogram_discretize_rejects_nan():
    with pytest.raises(ValueError, match="NaN"):
        histogram_discretize(np.array([[0.0], [np.nan]]))


def test_discrete_mi_matrix_matches_sklearn_loop(rs):
    x = rs.randint(0, 7, size=(500, 4))
    y = np.stack([rs.randint(0, 3, 500), x[:, 0] % 2 + 10 * rs.randint(0, 2, 500), rs.randint(-5, 5, 500)], axis=1)
    got = discrete_mi_matrix(x, y).numpy()
    want = np.array([[mutual_info_score(y[:, j], x[:, i]) for j in range(3)] for i in range(4)])
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-12)
    np.testing.assert_allclose(discrete_entropy(y).numpy(),
                               [mutual_info_score(y[:, j], y[:, j]) for j in range(3)], rtol=0, atol=1e-12)


def test_discrete_mi_chunked_equals_single_pass(rs, monkeypatch):
    codes, factors = entangled_codes(rs, n=800)
    whole = mutual_info_matrix(codes, factors)[0]
    monkeypatch.setattr(discrete_mi, "_MAX_INDEX_ENTRIES", 800 * factors.shape[1] * 2)  # 2 latents per chunk
    np.testing.assert_array_equal(mutual_info_matrix(codes, factors)[0], whole)


def test_mutual_info_matrix_matches_disentanglement_lib(rs):
    codes, factors = entangled_codes(rs)
    mi, entropy = mutual_info_matrix(torch.from_numpy(codes), factors)
    np.testing.assert_allclose(mi, ref.discrete_mutual_info(ref.histogram_discretize(codes.T), factors.T),
                               rtol=0, atol=1e-12)
    np.testing.assert_allclose(entropy, ref.discrete_entropy(factors.T), rtol=0, atol=1e-12)


@pytest.mark.cuda
def test_discrete_mi_on_cuda_matches_cpu(rs):
    codes, factors = entangled_codes(rs)
    cpu = mutual_info_matrix(codes, factors)[0]
    gpu = mutual_info_matrix(torch.from_numpy(codes).cuda(), torch.from_numpy(factors).cuda())[0]
    np.testing.assert_allclose(gpu, cpu, rtol=0, atol=1e-12)


def test_single_thread_block_restores_thread_count():
    before = torch.get_num_threads()
    with discrete_mi.single_thread_on_cpu("cpu"):
        assert torch.get_num_threads() == 1
    assert torch.get_num_threads() == before
