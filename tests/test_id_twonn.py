"""TwoNN: right ID on known manifolds, agreement with scikit-dimension, exact neighbours, duplicates, bad input."""
from __future__ import annotations

import warnings

import numpy as np
import pytest
import skdim
import torch
from scipy.spatial.distance import cdist

from idlab.id import nearest_neighbours, twonn, twonn_bootstrap
from idlab.id.knn import knn_within
from idlab.id.twonn import distinct_neighbours, fit_twonn, fit_twonn_batched, subsets_r1_r2, two_nearest_distances


def gen(seed: int) -> torch.Generator:
    """A seeded CPU generator."""
    return torch.Generator().manual_seed(seed)


def linear_subspace(d: int, n: int = 3000, ambient: int = 100, seed: int = 0) -> torch.Tensor:
    """Gaussian points spanning a random d-dimensional linear subspace of R^ambient."""
    g = gen(seed)
    basis = torch.linalg.qr(torch.randn(ambient, d, generator=g, dtype=torch.float64))[0].T
    return (torch.randn(n, d, generator=g, dtype=torch.float64) @ basis).float()


def noisy_sphere(d: int, noise: float, n: int = 4000, ambient: int = 100, seed: int = 0) -> torch.Tensor:
    """Uniform points on the unit d-sphere, rotated into R^ambient, plus isotropic Gaussian noise."""
    g = gen(seed)
    s = torch.randn(n, d + 1, generator=g, dtype=torch.float64)
    s = s / s.norm(dim=1, keepdim=True)
    basis = torch.linalg.qr(torch.randn(ambient, d + 1, generator=g, dtype=torch.float64))[0].T
    return (s @ basis + noise * torch.randn(n, ambient, generator=g, dtype=torch.float64)).float()


def brute_force_r1_r2(x: torch.Tensor) -> np.ndarray:
    """Reference (r1, r2) from float64 differences (scipy), self excluded."""
    d = cdist(x.double().numpy(), x.double().numpy())
    np.fill_diagonal(d, np.inf)
    return np.sort(d, axis=1)[:, :2]


@pytest.mark.parametrize("d", [2, 5, 10])
def test_linear_subspace_dimension_within_10_percent(d: int) -> None:
    x = linear_subspace(d)
    for method in ("linear", "mle"):
        assert twonn(x, method=method) == pytest.approx(d, rel=0.10)


@pytest.mark.parametrize("d,noise", [(2, 3e-4), (5, 1e-3)])
def test_noisy_sphere_dimension_within_10_percent(d: int, noise: float) -> None:
    assert twonn(noisy_sphere(d, noise)) == pytest.approx(d, rel=0.10)


def test_large_noise_inflates_the_sphere_estimate() -> None:
    """Noise comparable to neighbour spacing fills the ambient space: TwoNN must see it (Facco's scale caveat)."""
    assert twonn(noisy_sphere(2, 3e-2, n=2000)) > 1.5 * twonn(noisy_sphere(2, 3e-4, n=2000))


@pytest.mark.parametrize("method", ["linear", "mle"])
def test_agrees_with_skdim_twonn_within_1_percent(method: str) -> None:
    x = linear_subspace(8, n=1500, ambient=300, seed=3)
    ours = twonn(x, method=method)
    theirs = skdim.id.TwoNN(method=method).fit(x.double().numpy()).dimension_
    assert ours == pytest.approx(theirs, rel=0.01)


def test_neighbours_are_exact_on_ill_conditioned_data() -> None:
    """Two far clusters with tiny spread: ||x||²+||y||²−2x·y cancels in float32 and float64; results must not."""
    g = gen(1)
    centres = torch.where(torch.rand(400, 1, generator=g) < 0.5, 1e4, -1e4)
    x = (centres + 1e-3 * torch.randn(400, 50, generator=g, dtype=torch.float64)).float()
    naive = (x * x).sum(1)[:, None] + (x * x).sum(1)[None, :] - 2 * x @ x.T
    assert (naive.fill_diagonal_(1).min() <= 0).item(), "the test data must defeat the matmul formula"
    neighbours = nearest_neighbours(x, candidates=4)
    np.testing.assert_allclose(neighbours.distances[:, :2].cpu().numpy(), brute_force_r1_r2(x), rtol=1e-6)


def test_near_duplicates_keep_positive_r1() -> None:
    g = gen(2)
    base = 100.0 + torch.randn(300, 512, generator=g)
    x = torch.cat([base, base + 1e-3 * torch.randn(300, 512, generator=g)])
    naive = ((x[:300] * x[:300]).sum(1) + (x[300:] * x[300:]).sum(1) - 2 * (x[:300] * x[300:]).sum(1)).clamp_min(0)
    assert (naive == 0).any(), "float32 cancellation must give r1 = 0 here for the test to mean anything"
    r = two_nearest_distances(x)
    assert (r[:, 0] > 0).all()
    np.testing.assert_allclose(r.cpu().numpy(), brute_force_r1_r2(x), rtol=1e-6)
    assert np.isfinite(twonn(x))


def test_exact_duplicates_are_dropped_with_a_warning_and_give_no_nan() -> None:
    x = linear_subspace(4, n=800, ambient=50)
    doubled = torch.cat([x, x[:100], x[:10]])
    with pytest.warns(UserWarning, match="Dropping 110 exact duplicate points"):
        value = twonn(doubled)
    assert np.isfinite(value) and value == pytest.approx(twonn(x), rel=1e-12)


def test_all_points_on_few_locations_still_error_clearly() -> None:
    x = torch.tensor([[0.0, 1.0], [1.0, 0.0]]).repeat(5, 1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with pytest.raises(ValueError, match="at least 3 points"):
            twonn(x)


def test_bootstrap_mean_near_full_estimate_with_positive_spread_and_is_seeded() -> None:
    x = linear_subspace(6, n=2000)
    result = twonn_bootstrap(x, n_resamples=10, fraction=0.9, seed=0)
    assert result.value == pytest.approx(twonn(x), rel=0.05)
    assert 0 < result.std < 0.1 * result.value
    assert twonn_bootstrap(x, n_resamples=10, seed=0) == result
    assert twonn_bootstrap(x, n_resamples=10, seed=1) != result


def test_subset_neighbours_reused_from_full_set_are_exact() -> None:
    """Bootstrap reuses the full set's certified neighbours; on a subset they must equal a fresh search."""
    x = linear_subspace(3, n=600, ambient=20).double()
    points, neighbours = distinct_neighbours(x, candidates=3)
    subsets = torch.stack([torch.randperm(600, generator=gen(s))[:300] for s in range(3)])
    reused = subsets_r1_r2(points, neighbours, subsets.to(points.device))
    for r, subset in zip(reused, subsets):
        np.testing.assert_allclose(r.cpu().numpy(), brute_force_r1_r2(x[subset]), rtol=1e-12)


def test_chunking_and_precision_tiers_do_not_change_the_answer() -> None:
    x = linear_subspace(5, n=500, ambient=64)
    whole = knn_within(x, torch.arange(500), k=2, candidates=8)
    chunked = knn_within(x, torch.arange(500), k=2, candidates=8, chunk_size=37)
    assert torch.equal(whole.distances[:, :2], chunked.distances[:, :2])
    np.testing.assert_allclose(whole.distances[:, :2].cpu().numpy(), brute_force_r1_r2(x), rtol=1e-6)


@pytest.mark.parametrize("data", ["manifold", "far_clusters", "near_duplicates"])
def test_every_precision_tier_certifies_only_exact_neighbours(data: str) -> None:
    """The GPU's float16 first tier (emulated on the CPU with the same arithmetic) never certifies a wrong row."""
    g = gen(4)
    if data == "manifold":
        x = torch.tanh(torch.randn(600, 6, generator=g) @ torch.randn(6, 256, generator=g))
    elif data == "far_clusters":
        x = (torch.where(torch.rand(300, 1, generator=g) < 0.5, 1e4, -1e4) + 1e-3 * torch.randn(300, 40, generator=g))
    else:
        base = 50.0 + torch.randn(200, 128, generator=g)
        x = torch.cat([base, base + 1e-4 * torch.randn(200, 128, generator=g)])
    found = knn_within(x, torch.arange(len(x)), k=2, candidates=6,
                       tiers=(torch.float16, torch.float32, torch.float64))
    np.testing.assert_allclose(found.distances[:, :2].numpy(), brute_force_r1_r2(x), rtol=1e-6)
    assert sum(found.tiers.values()) == len(x)
    if data == "manifold":
        assert found.tiers["float16"] == len(x), "well-separated data should need no escalation"
    if data == "far_clusters":
        assert found.tiers["float16"] == 0


@pytest.mark.parametrize("method,discard", [("linear", 0.1), ("linear", 0.3), ("mle", 0.1), ("mle", 0.0)])
def test_fits_are_skdims_fit_on_our_distances(method: str, discard: float) -> None:
    """The single fit calls skdim; the batched bootstrap fit reimplements it and must agree to rounding."""
    r = torch.tensor(brute_force_r1_r2(linear_subspace(4, n=500)))
    reference = skdim.id.TwoNN(dist=True, method=method, discard_fraction=discard).fit(r.numpy()).dimension_
    assert fit_twonn(r, discard, method) == reference
    batched = fit_twonn_batched(torch.stack([r, r.flip(0)]), discard, method)
    np.testing.assert_allclose(batched.numpy(), [reference, reference], rtol=1e-10)


@pytest.mark.parametrize("x,message", [
    (torch.randn(2, 5), "at least 3 points"),
    (torch.tensor([[0.0, float("nan")], [1.0, 2.0], [3.0, 4.0]]), "NaN or inf"),
    (torch.randn(10), r"shape \(N, F\)"),
])
def test_bad_points_are_named(x: torch.Tensor, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        twonn(x)


@pytest.mark.parametrize("kwargs,message", [
    ({"method": "ols"}, "method='ols'"),
    ({"discard_fraction": 0.0}, "use method='mle'"),
    ({"discard_fraction": 1.0}, r"discard_fraction=1.0 must be in \[0, 1\)"),
])
def test_bad_fit_options_are_named(kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        twonn(torch.randn(20, 3), **kwargs)
