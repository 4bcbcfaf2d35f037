"""GRIDE, ID against scale and neighbourhood overlap: against independent references, known manifolds, bad input."""
from __future__ import annotations

import warnings

import numpy as np
import pytest
import skdim
import torch
from scipy.optimize import minimize_scalar
from scipy.spatial.distance import cdist
from scipy.special import betaln

from idlab.id import distinct_search, gride, id_scaling, neighbourhood_overlap, twonn
from idlab.id.knn import NeighbourSearch

FP16_FIRST = (torch.float16, torch.float32, torch.float64)


def gen(seed: int) -> torch.Generator:
    """A seeded CPU generator."""
    return torch.Generator().manual_seed(seed)


def gaussian_manifold(d: int, n: int = 2000, ambient: int = 40, noise: float = 0.0, seed: int = 0) -> torch.Tensor:
    """Gaussian latents of dimension d, rotated into R^ambient, plus isotropic Gaussian noise of std `noise`."""
    g = gen(seed)
    basis = torch.linalg.qr(torch.randn(ambient, d, generator=g, dtype=torch.float64))[0].T
    x = torch.randn(n, d, generator=g, dtype=torch.float64) @ basis
    return x + noise * torch.randn(n, ambient, generator=g, dtype=torch.float64)


def sphere(d: int, n: int = 2000, ambient: int = 40, seed: int = 0) -> torch.Tensor:
    """Uniform points on the unit d-sphere (curved, no boundary), rotated into R^ambient."""
    g = gen(seed)
    s = torch.randn(n, d + 1, generator=g, dtype=torch.float64)
    basis = torch.linalg.qr(torch.randn(ambient, d + 1, generator=g, dtype=torch.float64))[0].T
    return (s / s.norm(dim=1, keepdim=True)) @ basis


def curved_manifold(d: int, n: int = 2000, ambient: int = 40, seed: int = 0) -> torch.Tensor:
    """A smooth curved d-manifold: tanh of a random linear map of d uniform latents."""
    g = gen(seed)
    z = 2 * torch.rand(n, d, generator=g, dtype=torch.float64) - 1
    return torch.tanh(z @ torch.randn(d, ambient, generator=g, dtype=torch.float64))


def sorted_distances(x: torch.Tensor) -> np.ndarray:
    """Every point's distances to the others, ascending (float64 brute force, self excluded)."""
    d = cdist(x.double().numpy(), x.double().numpy())
    np.fill_diagonal(d, np.inf)
    return np.sort(d, axis=1)[:, :-1]


def neighbour_sets(x: torch.Tensor, k: int) -> np.ndarray:
    """Indices of every point's k nearest others (float64 brute force)."""
    d = cdist(x.double().numpy(), x.double().numpy())
    np.fill_diagonal(d, np.inf)
    return np.argsort(d, axis=1, kind="stable")[:, :k]


def paper_log_likelihood(d: float, mu: np.ndarray, n1: int, n2: int) -> float:
    """Denti et al. (2022), μ = r_n2/r_n1: Σ log[d (μ^d − 1)^(n2−n1−1) / (B(n2−n1, n1) μ^(d(n2−1)+1))],
    with (N − 1) log d in place of N log d (the unbiased convention DADApy and scikit-dimension use)."""
    log_mu = np.log(mu)
    n = len(mu)
    return ((n - 1) * np.log(d) + (n2 - n1 - 1) * np.sum(np.log(np.expm1(d * log_mu)))
            - n * betaln(n2 - n1, n1) - np.sum(((n2 - 1) * d + 1) * log_mu))


def paper_gride(x: torch.Tensor, n1: int, n2: int) -> tuple[float, float]:
    """(ID, standard error): direct numerical maximisation of the paper's likelihood, error from its curvature."""
    r = sorted_distances(x)
    mu = r[:, n2 - 1] / r[:, n1 - 1]
    result = minimize_scalar(lambda d: -paper_log_likelihood(d, mu, n1, n2), bounds=(0.05, 200), method="bounded",
                             options={"xatol": 1e-11})
    d, h = result.x, 1e-3 * result.x
    curvature = (paper_log_likelihood(d + h, mu, n1, n2) - 2 * paper_log_likelihood(d, mu, n1, n2)
                 + paper_log_likelihood(d - h, mu, n1, n2)) / h**2
    return d, 1 / np.sqrt(-curvature)


@pytest.mark.parametrize("d,make", [(2, gaussian_manifold), (5, gaussian_manifold), (10, gaussian_manifold),
                                    (3, sphere), (6, sphere)])
@pytest.mark.parametrize("n1,n2", [(1, 2), (2, 4), (4, 8), (3, 10)])
def test_gride_maximises_the_papers_likelihood(d: int, make, n1: int, n2: int) -> None:
    x = make(d, n=1200)
    ours = gride(x, n1, n2)
    reference, error = paper_gride(x, n1, n2)
    assert ours.value == pytest.approx(reference, rel=1e-6)
    assert ours.std == pytest.approx(error, rel=1e-4)
    assert ours.value == pytest.approx(d, rel=0.15), "a manifold of known dimension reads its dimension"


@pytest.mark.filterwarnings("ignore:divide by zero:RuntimeWarning")  # skdim's unused linear-fit arrays
def test_n1_1_n2_2_is_the_twonn_mle() -> None:
    x = gaussian_manifold(6)
    ours = gride(x)
    assert ours.value == pytest.approx(twonn(x, discard_fraction=0.0, method="mle"), rel=1e-12)
    r = sorted_distances(x)[:, :2]
    skdim_mle = skdim.id.TwoNN(discard_fraction=0.0, dist=True, method="mle").fit(r).dimension_
    assert ours.value == pytest.approx(skdim_mle, rel=1e-10)
    assert ours.std == pytest.approx(ours.value / np.sqrt(len(x) - 1), rel=1e-10)  # I(d) = (N − 1)/d²


def test_gride_matches_scikit_dimension_gride() -> None:
    """skdim 0.5.0's GRIDE is a third implementation (brentq on the score); its outlier cut drops nothing here."""
    x = curved_manifold(5, n=1500)
    for n1, n2 in [(1, 2), (4, 8), (2, 7)]:
        theirs = skdim.id.GRIDE(n1=n1, n2=n2).fit(x.numpy())
        ours = gride(x, n1, n2)
        assert ours.value == pytest.approx(theirs.dimension_, rel=1e-9)
        assert ours.std == pytest.approx(theirs.error_, rel=1e-3)  # skdim's information has N where we have N − 1


def test_id_scaling_is_gride_at_every_doubling_with_mean_neighbour_distances_as_scales() -> None:
    x = curved_manifold(4, n=1000)
    curve = id_scaling(x, range_max=64)
    r = sorted_distances(x)
    assert len(curve.ids) == 6 and list(curve.ranks) == [2, 4, 8, 16, 32, 64]
    for i, n1 in enumerate([1, 2, 4, 8, 16, 32]):
        single = gride(x, n1, 2 * n1)
        assert curve.ids[i] == pytest.approx(single.value, rel=1e-12)
        assert curve.errors[i] == pytest.approx(single.std, rel=1e-12)
        assert curve.scales[i] == pytest.approx(((r[:, n1 - 1] + r[:, 2 * n1 - 1]) / 2).mean(), rel=1e-9)
    assert np.all(np.diff(curve.scales) > 0)
    assert len(id_scaling(x, range_max=100).ids) == 6, "range_max is rounded down to a power of two"


def test_noisy_5d_manifold_in_40d_reads_high_at_small_scale_and_5_at_large_scale() -> None:
    """Facco's and Denti's point: noise inflates the ID at short distances, the manifold's ID appears beyond them."""
    x = gaussian_manifold(5, n=4000, noise=0.03)
    curve = id_scaling(x, range_max=128)
    assert curve.ids[0] > 6.0, "the smallest scale sees the 40-D noise"
    assert curve.ids[-1] == pytest.approx(5, abs=0.25), "the largest scale sees the 5-D manifold"
    assert np.all(np.diff(curve.ids) < 0.05), "the ID falls with scale as the noise is resolved"
    assert twonn(x) > 6.0, "TwoNN reads only the smallest scale"


def reference_decimation(x: torch.Tensor, steps: int, seed: int) -> tuple[list[float], list[float], list[float]]:
    """Decimated TwoNN from brute-force neighbours within each block: the same seeded partition, skdim's fit."""
    g = torch.Generator().manual_seed(seed)
    ids, scales, errors = [], [], []
    for step in range(steps):
        blocks = 2**step
        size = len(x) // blocks
        partition = torch.randperm(len(x), generator=g)[: blocks * size].reshape(blocks, size)
        values, r_all = [], []
        for block in partition:
            r = sorted_distances(x[block])[:, :2]
            values.append(skdim.id.TwoNN(dist=True).fit(r).dimension_)
            r_all.append(r)
        ids.append(np.mean(values))
        errors.append(np.std(values) / np.sqrt(blocks) if blocks > 1 else 0.0)
        scales.append(np.mean(r_all))
    return ids, scales, errors


def test_twonn_decimation_curve_equals_brute_force_within_blocks() -> None:
    """Blocks of 18 points at the last step: most rows' block neighbours lie beyond the shared search's lists."""
    x = curved_manifold(3, n=600)
    curve = id_scaling(x, range_max=64, method="twonn", seed=4)
    ids, scales, errors = reference_decimation(x, 6, seed=4)
    np.testing.assert_allclose(curve.ids, ids, rtol=1e-9)
    np.testing.assert_allclose(curve.scales, scales, rtol=1e-9)
    np.testing.assert_allclose(curve.errors, errors, rtol=1e-7, atol=1e-12)
    assert curve.errors[0] == 0 and np.all(curve.errors[1:] > 0) and np.all(np.diff(curve.scales) > 0)
    assert abs(curve.ids[0] - 3) < 0.5


def test_one_search_serves_every_scale_the_decimation_and_the_overlap() -> None:
    x = curved_manifold(4, n=500)
    labels = (x[:, 0] > 0).long() + 2 * (x[:, 1] > 0).long()
    found = distinct_search(x, k=64)
    certified = found.search.certified.clone()
    assert id_scaling(found, 64).ids.tolist() == id_scaling(x, 64).ids.tolist()
    assert id_scaling(found, 64, "twonn").ids.tolist() == id_scaling(x, 64, "twonn").ids.tolist()
    assert neighbourhood_overlap(found, labels, k=30) == neighbourhood_overlap(x, labels, k=30)
    assert gride(found, 3, 9).value == gride(x, 3, 9).value
    assert twonn(found) == twonn(x)
    assert bool((found.search.certified >= certified).all()), "reuse only widens the shared search"


@pytest.mark.parametrize("tiers", [None, FP16_FIRST])
def test_sixty_four_certified_neighbours_are_exact_on_concentrated_distances(tiers) -> None:
    """ReLU features in 1,024-D (concentrated distances, a hard case for the rounded search): exact to fp32."""
    x = torch.relu(torch.randn(400, 1024, generator=gen(7)))
    search = NeighbourSearch(x, torch.arange(len(x)), candidates=80, widest=128, tiers=tiers)
    search.settle(64)
    found = search.neighbours()
    assert bool((found.certified >= 64).all())
    np.testing.assert_allclose(found.distances[:, :64].numpy(), sorted_distances(x)[:, :64], rtol=1e-6)
    assert (np.sort(found.indices[:, :64].numpy(), 1) == np.sort(neighbour_sets(x, 64), 1)).mean() > 0.999


def test_overlap_of_a_representation_with_itself_is_one_and_with_a_random_one_k_over_n() -> None:
    x = curved_manifold(5, n=2000)
    k = 30
    assert neighbourhood_overlap(x, x, k) == 1.0
    assert neighbourhood_overlap(x, 3.0 * x + 1.0, k) == 1.0, "distances scaled: the same neighbourhoods"
    random = torch.randn(2000, 12, generator=gen(1), dtype=torch.float64)
    # shared neighbours of independent sets: hypergeometric, mean k/(N − 1); the mean over N points has std ~5e-4
    assert neighbourhood_overlap(x, random, k) == pytest.approx(k / (len(x) - 1), abs=3e-3)


def test_overlaps_equal_brute_force_neighbour_sets() -> None:
    x = curved_manifold(4, n=700)
    y = x @ torch.randn(40, 20, generator=gen(2), dtype=torch.float64) + 0.05 * torch.randn(700, 20, generator=gen(3),
                                                                                             dtype=torch.float64)
    labels = torch.randint(0, 5, (700,), generator=gen(4))
    labels[x[:, 0] > 0.5] = 5  # an imbalanced, spatially coherent class
    k = 25
    a, b = neighbour_sets(x, k), neighbour_sets(y, k)
    shared = np.mean([len(np.intersect1d(a[i], b[i])) / k for i in range(len(x))])
    assert neighbourhood_overlap(x, y, k) == pytest.approx(shared, rel=1e-12)
    own = labels.numpy()
    fraction = (own[a] == own[:, None]).mean(1)
    assert neighbourhood_overlap(x, labels, k) == pytest.approx(fraction.mean(), rel=1e-12)
    counts = np.bincount(own)[own]
    balanced = np.average(fraction, weights=1 / counts)  # DADApy's default: classes weighed equally
    assert neighbourhood_overlap(x, labels, k, weighted=True) == pytest.approx(balanced, rel=1e-12)
    assert neighbourhood_overlap(x, labels, k, weighted=True) != pytest.approx(fraction.mean(), rel=1e-3)


def test_separated_classes_have_label_overlap_one() -> None:
    centres = 100 * torch.randn(4, 10, generator=gen(5), dtype=torch.float64)
    labels = torch.arange(400) % 4
    x = centres[labels] + torch.randn(400, 10, generator=gen(6), dtype=torch.float64)
    assert neighbourhood_overlap(x, labels, k=30) == 1.0


def test_duplicates_are_collapsed_as_for_twonn() -> None:
    x = curved_manifold(3, n=500)
    labels = torch.arange(500) % 3
    doubled = torch.cat([x, x[:50]])
    with pytest.warns(UserWarning, match="Dropping 50 exact duplicate points"):
        assert id_scaling(doubled, 32).ids.tolist() == id_scaling(x, 32).ids.tolist()
    with pytest.warns(UserWarning, match="Dropping 50 exact duplicate points"):
        assert gride(doubled, 2, 4) == gride(x, 2, 4)
    with pytest.warns(UserWarning, match="Dropping 50"):
        assert neighbourhood_overlap(doubled, torch.cat([labels, labels[:50]]), 10) == neighbourhood_overlap(
            x, labels, 10)
    other = torch.randn(550, 6, generator=gen(8), dtype=torch.float64)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        restricted = neighbourhood_overlap(doubled, other, 10)
    assert restricted == neighbourhood_overlap(x, other[:500], 10), "a duplicate in one is dropped from both"


def test_all_ties_give_an_infinite_id_not_nan() -> None:
    """Points of an integer lattice: r_n1 = r_n2 for every point at small ranks, the likelihood rises forever."""
    grid = torch.stack(torch.meshgrid(torch.arange(12.0), torch.arange(12.0), indexing="ij"), -1).reshape(-1, 2)
    assert gride(grid.double(), 1, 2).value == float("inf")
    assert np.isfinite(gride(grid.double(), 4, 8).value)


@pytest.mark.parametrize("call,message", [
    (lambda x: id_scaling(x, range_max=100), r"range_max=100 needs more than 100 points, got N=100"),
    (lambda x: id_scaling(x, range_max=1), r"range_max=1 must be an integer >= 2"),
    (lambda x: id_scaling(x, range_max=16.0), r"range_max=16.0 must be an integer"),
    (lambda x: id_scaling(x, method="levina"), r"method='levina' is not an ID-scaling method"),
    (lambda x: id_scaling(x[:90], range_max=64, method="twonn"), r"splits N=90 points into 32 blocks of 2 < 3"),
    (lambda x: gride(x, 2, 2), r"1 <= n1 < n2, got n1=2, n2=2"),
    (lambda x: gride(x, 1, 100), r"n2=100 needs more than 100 points, got N=100"),
    (lambda x: neighbourhood_overlap(x, x, k=0), r"k=0 must be a positive integer"),
    (lambda x: neighbourhood_overlap(x, x, k=-3), r"k=-3 must be a positive integer"),
    (lambda x: neighbourhood_overlap(x, x, k=100), r"k=100 neighbours need more than 100 points, got N=100"),
    (lambda x: neighbourhood_overlap(x, x[:90], k=5), r"same points: got N=100 and N=90"),
    (lambda x: neighbourhood_overlap(x, torch.zeros(90, dtype=torch.long), k=5), r"got N=100 and N=90"),
    (lambda x: neighbourhood_overlap(x, torch.rand(100), k=5), r"labels must be integers"),
    (lambda x: neighbourhood_overlap(x, x, k=5, weighted=True), r"weighted=True"),
])
def test_bad_input_is_named(call, message: str) -> None:
    x = curved_manifold(3, n=100)
    with pytest.raises(ValueError, match=message):
        call(x)


def test_too_few_distinct_points_for_the_range_is_named() -> None:
    x = torch.cat([curved_manifold(3, n=40)] * 3)
    with pytest.warns(UserWarning, match="Dropping 80"), pytest.raises(ValueError, match=r"40 distinct points .* 64"):
        id_scaling(x, range_max=64)
