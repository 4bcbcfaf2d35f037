"""Estimators by name (GPU TwoNN, scikit-dimension, coding rate) and the coding-rate maths."""
from __future__ import annotations

import math

import pytest
import skdim
import torch

from idlab.id import coding_rate, estimate, make_estimator, rate_reduction, twonn, valid_names


def subspace_points(d: int, n: int = 1500, ambient: int = 40, seed: int = 0) -> torch.Tensor:
    """Gaussian points in a random d-dimensional subspace of R^ambient."""
    g = torch.Generator().manual_seed(seed)
    basis = torch.linalg.qr(torch.randn(ambient, d, generator=g, dtype=torch.float64))[0].T
    return torch.randn(n, d, generator=g, dtype=torch.float64) @ basis


def test_twonn_by_name_is_the_gpu_twonn_whatever_the_case() -> None:
    x = subspace_points(5)
    single = {"name": "TwoNN", "n_resamples": 0}
    assert estimate(x, single).value == twonn(x) and estimate(x, single).std is None
    assert estimate(x, {"name": "twonn", "n_resamples": 0, "method": "mle"}).value == twonn(x, method="mle")
    resampled = estimate(x, "twonn")
    assert resampled.std is not None and resampled.value == pytest.approx(5, rel=0.1)


@pytest.mark.parametrize("name,kwargs", [("lPCA", {}), ("MLE", {}), ("MOM", {})])
def test_skdim_estimators_by_name_match_skdim_directly(name: str, kwargs: dict) -> None:
    x = subspace_points(4, n=600)
    ours = estimate(x, {"name": name, **kwargs}).value
    theirs = getattr(skdim.id, name)(**kwargs).fit(x.numpy()).dimension_
    assert ours == pytest.approx(theirs, rel=1e-9)
    assert ours == pytest.approx(4, rel=0.25)


def test_skdim_estimator_resampling_gives_a_spread() -> None:
    result = estimate(subspace_points(4, n=600), {"name": "MLE", "n_resamples": 4, "fraction": 0.8})
    assert result.std is not None and result.std > 0 and result.value == pytest.approx(4, rel=0.25)


def test_unknown_estimator_lists_the_valid_names() -> None:
    with pytest.raises(ValueError, match=r"unknown estimator 'TwoNNN'.*'lPCA'.*") as error:
        make_estimator("TwoNNN")
    for name in ("twonn", "gride", "id_scaling", "overlap", "coding_rate", "MLE", "DANCo"):
        assert name in str(error.value)
    assert set(valid_names()) >= {"twonn", "gride", "id_scaling", "overlap", "coding_rate", "rate_reduction", "MLE",
                                  "lPCA"}
    assert "GRIDE" not in valid_names() and "TwoNN" not in valid_names(), "native estimators shadow skdim's"


@pytest.mark.parametrize("spec,message", [
    ({"name": "MLE", "neighbours": 5}, r"skdim.id.MLE does not take \['neighbours'\]"),
    ({"name": "twonn", "fracton": 0.9}, r"estimator 'twonn' does not take \['fracton'\]"),
    ({"n_resamples": 3}, "has no name"),
    ({"name": "coding_rate", "eps": 0}, "eps=0 must be > 0"),
    ({"name": "twonn", "n_resamples": -1}, "n_resamples=-1"),
])
def test_bad_estimator_options_are_named(spec: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        make_estimator(spec)


def test_coding_rate_of_an_orthonormal_set_has_the_closed_form() -> None:
    """N = F unit rows, ZZᵀ = I: R = ½ F log(1 + 1/ε²)."""
    z = torch.linalg.qr(torch.randn(32, 32, dtype=torch.float64))[0]
    assert coding_rate(z, eps=0.5) == pytest.approx(0.5 * 32 * math.log(1 + 1 / 0.25), rel=1e-10)


def test_coding_rate_is_rotation_invariant_and_uses_either_gram_side() -> None:
    z = torch.randn(50, 20, dtype=torch.float64)
    rotation = torch.linalg.qr(torch.randn(20, 20, dtype=torch.float64))[0]
    assert coding_rate(z @ rotation) == pytest.approx(coding_rate(z), rel=1e-10)
    wide = torch.randn(20, 50, dtype=torch.float64)
    alpha = 50 / (20 * 0.25)
    direct = 0.5 * torch.logdet(torch.eye(50, dtype=torch.float64) + alpha * wide.T @ wide).item()
    assert coding_rate(wide, normalize=False) == pytest.approx(direct, rel=1e-10)


def test_coding_rate_grows_with_the_dimension_of_the_data() -> None:
    rates = [coding_rate(subspace_points(d, n=500)) for d in (2, 5, 10, 20)]
    assert rates == sorted(rates) and rates[0] < rates[-1] / 3


def test_rate_reduction_rewards_classes_in_orthogonal_subspaces() -> None:
    g = torch.Generator().manual_seed(0)
    labels = torch.arange(400) % 2
    shared = torch.randn(400, 3, generator=g, dtype=torch.float64) @ torch.eye(3, 12, dtype=torch.float64)
    separate = torch.zeros(400, 12, dtype=torch.float64)
    separate[labels == 0, :3] = shared[labels == 0, :3]
    separate[labels == 1, 6:9] = shared[labels == 1, :3]
    assert rate_reduction(separate, labels) > rate_reduction(shared, labels) + 1.0
    assert rate_reduction(shared, labels) >= -1e-9


def test_rate_reduction_needs_one_label_per_point() -> None:
    with pytest.raises(ValueError, match="got 3 labels for 10 points"):
        rate_reduction(torch.randn(10, 4), torch.tensor([0, 1, 0]))
    with pytest.raises(ValueError, match="rate_reduction needs labels"):
        estimate(torch.randn(10, 4), "rate_reduction")
