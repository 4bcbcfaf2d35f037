"""Neighbour search internals: per-row widening, bootstrap subsets on near ties, duplicates, the Triton kernels."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from scipy.spatial.distance import cdist

import idlab.id.knn as knn
from idlab.id.knn import NeighbourSearch
from idlab.id.twonn import twonn_bootstrap, within_subsets

FP16_FIRST = (torch.float16, torch.float32, torch.float64)


def near_ties(groups: int = 40, size: int = 12, features: int = 64, seed: int = 0) -> torch.Tensor:
    """Far-apart groups of points at orthonormal offsets: within a group all distances agree to 1e-5 (near ties)."""
    g = torch.Generator().manual_seed(seed)
    centres = 10.0 * torch.randn(groups, 1, features, generator=g, dtype=torch.float64)
    directions = torch.linalg.qr(torch.randn(groups, features, size, generator=g, dtype=torch.float64))[0].mT
    radius = 1.0 + 1e-5 * torch.rand(groups, size, 1, generator=g, dtype=torch.float64)
    return (centres + 0.01 * radius * directions).reshape(-1, features).float()


def subset_reference(x: torch.Tensor, subset: torch.Tensor) -> np.ndarray:
    """(r1, r2) of each subset point among the subset, float64 brute force."""
    points = x[subset].double().numpy()
    d = cdist(points, points)
    np.fill_diagonal(d, np.inf)
    return np.sort(d, axis=1)[:, :2]


def random_subsets(n: int, size: int, count: int, seed: int = 0) -> torch.Tensor:
    """`count` random subsets of `size` of range(n), as rows."""
    g = torch.Generator().manual_seed(seed)
    return torch.stack([torch.randperm(n, generator=g)[:size] for _ in range(count)])


@pytest.mark.parametrize("tiers", [None, FP16_FIRST])
def test_subset_r1_r2_equal_brute_force_within_the_subset_on_near_ties(tiers) -> None:
    """Few candidates on near-tie groups: rows widen to the group's edge and read exact subset neighbours."""
    x = near_ties()
    search = NeighbourSearch(x, torch.arange(len(x)), candidates=3, tiers=tiers)
    search.settle(2)
    assert int(search.width.min()) > search.first, "a group's members must be ranked together"
    subsets = random_subsets(len(x), round(0.9 * len(x)), 6)
    for got, subset in zip(within_subsets(x, search, subsets), subsets):
        np.testing.assert_allclose(got.numpy(), subset_reference(x, subset), rtol=1e-6)


@pytest.mark.parametrize("tiers", [None, FP16_FIRST])
def test_rows_with_too_few_certified_subset_members_are_widened(tiers) -> None:
    """Concentrated distances: two certified neighbours often lose one to a 90% subset; such rows get more."""
    x = torch.relu(torch.randn(300, 1024, generator=torch.Generator().manual_seed(7)))
    search = NeighbourSearch(x, torch.arange(len(x)), candidates=2, tiers=tiers)
    search.settle(2)
    settled = search.width.clone()
    subsets = random_subsets(len(x), 270, 6)
    r = within_subsets(x, search, subsets)
    assert bool((search.width > settled).any())
    for got, subset in zip(r, subsets):
        np.testing.assert_allclose(got.numpy(), subset_reference(x, subset), rtol=1e-6)


def test_rows_short_of_members_after_widening_fall_back_to_an_exact_search_in_the_subset() -> None:
    x = near_ties(groups=20, size=10)
    search = NeighbourSearch(x, torch.arange(len(x)), candidates=2, widest=4)
    search.settle(2)
    subsets = random_subsets(len(x), len(x) // 3, 3, seed=1)
    r = within_subsets(x, search, subsets)
    for got, subset in zip(r, subsets):
        np.testing.assert_allclose(got.numpy(), subset_reference(x, subset), rtol=1e-6)


def test_widening_certifies_high_dimensional_rows_without_more_precision() -> None:
    """Concentrated distances (isotropic noise): more fp16 candidates, not float32, settle the rows."""
    x = torch.relu(torch.randn(400, 2048, generator=torch.Generator().manual_seed(3)))
    search = NeighbourSearch(x, torch.arange(400), candidates=2, tiers=FP16_FIRST)
    search.settle(2)
    assert search.neighbours().tiers["float16"] == 400
    assert int(search.width.max()) > 2
    reference = np.sort(np.where(np.eye(400) > 0, np.inf, cdist(x.double().numpy(), x.double().numpy())), 1)[:, :2]
    np.testing.assert_allclose(search.neighbours().distances[:, :2].numpy(), reference, rtol=1e-6)


@pytest.mark.parametrize("tiers", [None, FP16_FIRST])
def test_a_tight_cluster_with_far_outliers_certifies_in_the_first_tier(tiers, monkeypatch: pytest.MonkeyPatch) -> None:
    """A deep layer's geometry: most points crowd near the centre, a few lie ~1,000x farther out. Keys that far
    cannot be a cluster point's neighbours, so their norm must not set its error bound: the first tier certifies
    every cluster row, exactly; bounded against the farthest key, every cluster row went on to float64."""
    g = torch.Generator().manual_seed(11)
    x = torch.cat([1e-3 * torch.randn(600, 24, generator=g), torch.randn(6, 24, generator=g)])
    d = cdist(x.double().numpy(), x.double().numpy())
    np.fill_diagonal(d, np.inf)
    reference = np.sort(d, 1)[:, :16]
    space = knn.SearchSpace

    def searched(reach_bound: bool) -> NeighbourSearch:
        def build(keys: torch.Tensor, dtype: torch.dtype) -> knn.SearchSpace:
            built = space(keys, dtype)
            if not reach_bound:
                built.relative_error = 1.0  # lower_bounds then bounds against the farthest key only
            return built
        monkeypatch.setattr(knn, "SearchSpace", build)
        search = NeighbourSearch(x, torch.arange(len(x)), candidates=20, tiers=tiers)
        search.settle(16)
        np.testing.assert_allclose(search.neighbours().distances[:, :16].numpy(), reference, rtol=1e-6)
        return search

    assert bool((searched(True).tier[:600] == 0).all())
    assert bool((searched(False).tier[:600] > 0).all())


def test_exact_duplicates_certify_in_the_first_tier_and_bootstrap_drops_them() -> None:
    g = torch.Generator().manual_seed(5)
    distinct = torch.randn(300, 32, generator=g)
    x = torch.cat([distinct, (100.0 + torch.zeros(1, 32)).repeat(40, 1)])
    search = NeighbourSearch(x, torch.arange(len(x)), candidates=4, widest=8)
    search.settle(2)
    assert search.neighbours().tiers["float32"] == len(x), "zero distances need no bound"
    with pytest.warns(UserWarning, match="Dropping 39 exact duplicate points"):
        with_copies = twonn_bootstrap(x, n_resamples=5)
    assert with_copies == twonn_bootstrap(torch.cat([distinct, x[-1:]]), n_resamples=5)


def test_escalation_stops_at_brute_force_for_a_few_rows(monkeypatch: pytest.MonkeyPatch) -> None:
    """Ties no bound can split (a centre equidistant from six points) go to brute force, not to a new tier."""
    ring = torch.cat([torch.zeros(1, 40), torch.eye(40)[:6]]).double()
    x = torch.cat([ring, 5 + torch.rand(200, 40, generator=torch.Generator().manual_seed(6), dtype=torch.float64)])
    built: list[torch.dtype] = []
    space = knn.SearchSpace
    monkeypatch.setattr(knn, "SearchSpace", lambda keys, dtype: built.append(dtype) or space(keys, dtype))
    search = NeighbourSearch(x, torch.arange(len(x)), candidates=2, widest=4)
    search.settle(2)
    assert built == [torch.float32] and search.neighbours().tiers["brute_force"] == 7
    reference = np.sort(cdist(x.numpy(), x.numpy()) + np.diag(np.full(len(x), np.inf)), 1)[:, :2]
    np.testing.assert_allclose(search.neighbours().distances[:, :2].numpy(), reference, rtol=1e-12)


TRITON_CHECK = r"""
import torch
from idlab.id import distances, knn_triton
from idlab.id.twonn import twonn_bootstrap
g = torch.Generator().manual_seed(0)
keys = torch.randn(40, 300, generator=g) * 3 + 1
assert knn_triton.usable(keys)
pos, cand = torch.randint(0, 40, (20,), generator=g), torch.randint(0, 40, (20, 37), generator=g)  # 3 blocks
got = knn_triton.pair_squared_distances(keys, pos, cand)
diff = keys[pos][:, None] - keys[cand]
ref = (diff * diff).sum(2, dtype=torch.float64)
assert torch.allclose(got, ref, rtol=1e-13, atol=0), (got - ref).abs().max()
fast = distances.SearchSpace(keys, torch.float16)
x = torch.tanh(torch.randn(80, 4, generator=g) @ torch.randn(4, 100, generator=g))
fused = twonn_bootstrap(x, n_resamples=4)
knn_triton.usable = lambda keys: False
slow = distances.SearchSpace(keys, torch.float16)
assert fast.scale == slow.scale and torch.equal(fast.rounded, slow.rounded)
assert torch.allclose(fast.error, slow.error, rtol=1e-12) and torch.allclose(fast.sq_norms, slow.sq_norms, rtol=1e-12)
plain = twonn_bootstrap(x, n_resamples=4)
assert abs(fused.value - plain.value) < 1e-12 * plain.value and abs(fused.std - plain.std) < 1e-9 * plain.std
print("ok")
"""


def test_triton_kernels_match_the_pytorch_path_in_the_interpreter() -> None:
    pytest.importorskip("triton")
    env = {**os.environ, "TRITON_INTERPRET": "1", "OMP_NUM_THREADS": "1",
           "PYTHONPATH": os.pathsep.join(filter(None, [str(Path(__file__).resolve().parents[1] / "src"),
                                                       os.environ.get("PYTHONPATH")]))}
    done = subprocess.run([sys.executable, "-c", TRITON_CHECK], env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0 and "ok" in done.stdout, done.stderr[-3000:]


def test_symmetric_candidate_ranking_gives_the_same_neighbours(monkeypatch: pytest.MonkeyPatch) -> None:
    """Ranking from half the Gram matrix (blocks used for rows and columns) matches the row-chunked ranking."""
    x = torch.relu(torch.randn(230, 300, generator=torch.Generator().manual_seed(8)))
    chunked = NeighbourSearch(x, torch.arange(230), candidates=3, tiers=FP16_FIRST)
    chunked.settle(2)
    monkeypatch.setattr(knn, "SYMMETRIC_FEATURES", 1)
    monkeypatch.setattr(knn, "SYMMETRIC_BLOCK", 37)
    blocked = NeighbourSearch(x, torch.arange(230), candidates=3, tiers=FP16_FIRST)
    assert blocked.symmetric and not chunked.symmetric
    blocked.settle(2)
    np.testing.assert_array_equal(blocked.neighbours().distances[:, :2].numpy(),
                                  chunked.neighbours().distances[:, :2].numpy())
    reference = np.sort(np.where(np.eye(230) > 0, np.inf, cdist(x.double().numpy(), x.double().numpy())), 1)[:, :2]
    np.testing.assert_allclose(blocked.neighbours().distances[:, :2].numpy(), reference, rtol=1e-6)
