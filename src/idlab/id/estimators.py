"""Estimators by name: GPU TwoNN, GRIDE, ID vs scale, overlap, any scikit-dimension estimator, coding rate."""
from __future__ import annotations

import inspect
from collections.abc import Mapping, Sequence
from typing import Any, NamedTuple

import numpy as np
import skdim
import torch

from idlab.id.coding_rate import check_eps, coding_rate, rate_reduction
from idlab.id.knn import check_points
from idlab.id.multiscale import (
    Scaling, check_overlap_k, check_ranks, check_scaling, gride, id_scaling, neighbourhood_overlap, scale_steps,
)
from idlab.id.twonn import IDEstimate, Neighbourhoods, check_fit_options, check_fraction, twonn, twonn_bootstrap

NATIVE = ("twonn", "gride", "id_scaling", "overlap", "coding_rate", "rate_reduction")


def skdim_names() -> list[str]:
    """Names of scikit-dimension's estimator classes (skdim.id)."""
    return sorted(n for n, obj in vars(skdim.id).items() if inspect.isclass(obj) and hasattr(obj, "fit"))


def valid_names() -> list[str]:
    """Every estimator name `make_estimator` accepts (case-insensitive); the native ones shadow skdim's TwoNN/GRIDE."""
    return list(NATIVE) + [n for n in skdim_names() if n.lower() not in NATIVE]


class Reading(NamedTuple):
    """One value an estimator reports; `name` extends its tag (a scale such as `n8`), `scale` a neighbour distance."""

    value: float
    std: float | None = None
    name: str = ""
    scale: float | None = None


class Estimator:
    """A measure of a point cloud: `tag` names it in logs, `is_id` says whether it is an intrinsic dimension.

    `neighbours` > 0: it reads that many certified exact neighbours per point from a shared `distinct_search`
    (the callback runs one search per layer for all such estimators, with at least `candidates` exact distances
    per point at first). `per_scale`: it reports one ID per scale, so it gets no LLID/PID and no depth profile.
    `layers`: globs of the tracked layers it applies to (None: all).
    """

    tag: str = ""
    is_id: bool = True
    needs_labels: bool = False
    neighbours: int = 0
    candidates: int = 0
    per_scale: bool = False
    layers: list[str] | None = None
    profile_label: str | None = None  # y label of a depth-profile figure of its own (ID estimators share id_profile)

    def __call__(self, x: torch.Tensor, labels: torch.Tensor | None = None) -> IDEstimate:
        """Estimate on points x (N, F); labels are used only by label-aware measures."""
        raise NotImplementedError

    def read(self, x: torch.Tensor, labels: torch.Tensor | None = None,
             found: Neighbourhoods | None = None) -> list[Reading]:
        """Readings on x, from the shared search `found` of x when given (neighbour-based estimators)."""
        result = self(x if found is None or not self.neighbours else found, labels)
        return [Reading(result.value, result.std)]

    def check_points(self, n: int) -> None:
        """Raise if this estimator cannot run on n points (checked on the probe sizes before training)."""
        if n <= self.neighbours:
            raise ValueError(f"estimator {self.tag!r} reads {self.neighbours} neighbours per point, "
                             f"which needs more than {self.neighbours} points, got {n}")


class TwoNNEstimator(Estimator):
    """TwoNN with exact GPU neighbours and scikit-dimension's fit; bootstrap mean ± std when n_resamples > 0."""

    def __init__(self, discard_fraction: float = 0.1, method: str = "linear", n_resamples: int = 20,
                 fraction: float = 0.9, seed: int = 0, tag: str = "twonn") -> None:
        """Store and validate the fit and resampling options."""
        check_fit_options(discard_fraction, method)
        check_resampling(n_resamples, fraction)
        self.discard_fraction, self.method, self.tag = discard_fraction, method, tag
        self.n_resamples, self.fraction, self.seed = n_resamples, fraction, seed
        self.neighbours, self.candidates = 2, 6 if n_resamples else 4  # 6: rows rarely lack two subset members

    def __call__(self, x: torch.Tensor | Neighbourhoods, labels: torch.Tensor | None = None) -> IDEstimate:
        """TwoNN ID of x (points or their search), with std over resamples when resampling is on."""
        if self.n_resamples == 0:
            return IDEstimate(twonn(x, self.discard_fraction, self.method))
        return twonn_bootstrap(x, self.n_resamples, self.fraction, self.seed, self.discard_fraction, self.method)


class GrideEstimator(Estimator):
    """GRIDE (Denti et al. 2022) from the n1-th and n2-th exact neighbours; `std` is its standard error."""

    def __init__(self, n1: int = 1, n2: int | None = None, tag: str = "gride") -> None:
        """Store and validate the neighbour ranks (n2 defaults to 2·n1)."""
        n2 = 2 * n1 if n2 is None else n2
        check_ranks(n1, n2)
        self.n1, self.n2, self.tag, self.neighbours = n1, n2, tag, n2

    def __call__(self, x: torch.Tensor | Neighbourhoods, labels: torch.Tensor | None = None) -> IDEstimate:
        """GRIDE ID of x (points or their search) and its standard error."""
        return gride(x, self.n1, self.n2)


class ScalingEstimator(Estimator):
    """ID at each scale n2 = 2, 4, …, range_max (GRIDE, or TwoNN on decimated blocks), one reading per scale."""

    per_scale = True

    def __init__(self, range_max: int = 64, method: str = "gride", seed: int = 0, discard_fraction: float = 0.1,
                 twonn_fit: str = "linear", tag: str = "id_scaling") -> None:
        """Store and validate the scaling options."""
        check_scaling(range_max, method)
        if method == "twonn":
            check_fit_options(discard_fraction, twonn_fit)
        self.range_max, self.method, self.seed, self.tag = range_max, method, seed, tag
        self.discard_fraction, self.twonn_fit = discard_fraction, twonn_fit
        self.neighbours = 2 ** scale_steps(range_max)

    def __call__(self, x: torch.Tensor | Neighbourhoods, labels: torch.Tensor | None = None) -> IDEstimate:
        """The ID at the largest scale (the whole curve is `read`'s)."""
        curve = self.curve(x)
        return IDEstimate(float(curve.ids[-1]), float(curve.errors[-1]))

    def curve(self, x: torch.Tensor | Neighbourhoods) -> Scaling:
        """`id_scaling` of x with this estimator's options."""
        return id_scaling(x, self.range_max, self.method, self.seed, self.discard_fraction, self.twonn_fit)

    def read(self, x: torch.Tensor, labels: torch.Tensor | None = None,
             found: Neighbourhoods | None = None) -> list[Reading]:
        """One reading per scale, named by its largest neighbour rank (n2, n4, …), with its mean distance."""
        curve = self.curve(x if found is None else found)
        return [Reading(float(i), float(e), f"n{r}", float(s))
                for i, s, e, r in zip(curve.ids, curve.scales, curve.errors, curve.ranks)]

    def check_points(self, n: int) -> None:
        """range_max must stay below the probe size."""
        check_scaling(self.range_max, self.method, n)


class OverlapEstimator(Estimator):
    """Label overlap: mean fraction of each point's k exact nearest neighbours sharing its label (Doimo et al.)."""

    is_id = False
    needs_labels = True
    profile_label = "label overlap"

    def __init__(self, k: int = 30, weighted: bool = False, tag: str = "overlap") -> None:
        """Store and validate the neighbourhood size; `weighted` averages classes equally (DADApy's default)."""
        check_overlap_k(k)
        self.k, self.weighted, self.tag, self.neighbours = k, weighted, tag, k

    def __call__(self, x: torch.Tensor | Neighbourhoods, labels: torch.Tensor | None = None) -> IDEstimate:
        """Label overlap of x (points or their search) with one integer label per point."""
        if labels is None:
            raise ValueError("overlap needs labels: pass labels=... (the callback passes the probe targets)")
        return IDEstimate(neighbourhood_overlap(x, labels, self.k, self.weighted))

    def check_points(self, n: int) -> None:
        """k must stay below the probe size."""
        check_overlap_k(self.k, n)


class SkdimEstimator(Estimator):
    """Any scikit-dimension global estimator, fitted on the CPU in float64; optional resampled mean ± std."""

    def __init__(self, name: str, n_resamples: int = 0, fraction: float = 0.9, seed: int = 0,
                 tag: str | None = None, **params: Any) -> None:
        """Build skdim.id.<name>(**params), turning a bad keyword into an error that lists the valid ones."""
        check_resampling(n_resamples, fraction)
        cls = getattr(skdim.id, name)
        try:
            cls(**params)
        except TypeError as error:
            raise ValueError(f"skdim.id.{name} does not take {sorted(params)}: {error}; "
                             f"its arguments are {inspect.signature(cls.__init__)}") from error
        self.cls, self.params, self.tag = cls, params, tag or name.lower()
        self.n_resamples, self.fraction, self.seed = n_resamples, fraction, seed

    def __call__(self, x: torch.Tensor, labels: torch.Tensor | None = None) -> IDEstimate:
        """skdim's `dimension_` on x, or its mean ± std over random subsets."""
        points = check_points(x).detach().cpu().double().numpy()
        if self.n_resamples == 0:
            return IDEstimate(self.fit(points))
        rng = np.random.default_rng(self.seed)
        size = round(self.fraction * len(points))
        values = [self.fit(points[rng.permutation(len(points))[:size]]) for _ in range(self.n_resamples)]
        return IDEstimate(float(np.mean(values)), float(np.std(values)))

    def fit(self, points: np.ndarray) -> float:
        """One skdim fit."""
        return float(self.cls(**self.params).fit(points).dimension_)


class CodingRateEstimator(Estimator):
    """R_ε(Z) of the representation (nats): a compression measure, not an ID."""

    is_id = False

    def __init__(self, eps: float = 0.5, normalize: bool = True, tag: str = "coding_rate") -> None:
        """Store the distortion ε and whether rows are scaled to unit norm first."""
        check_eps(eps)
        self.eps, self.normalize, self.tag = eps, normalize, tag

    def __call__(self, x: torch.Tensor, labels: torch.Tensor | None = None) -> IDEstimate:
        """Coding rate of x."""
        return IDEstimate(coding_rate(x, self.eps, self.normalize))


class RateReductionEstimator(CodingRateEstimator):
    """ΔR = R_ε(Z) − Σ_k (n_k/N) R_ε(Z_k) with the probe labels as classes."""

    needs_labels = True

    def __init__(self, eps: float = 0.5, normalize: bool = True, tag: str = "rate_reduction") -> None:
        """Store the distortion ε and whether rows are scaled to unit norm first."""
        super().__init__(eps, normalize, tag)

    def __call__(self, x: torch.Tensor, labels: torch.Tensor | None = None) -> IDEstimate:
        """Rate reduction of x given one label per row."""
        if labels is None:
            raise ValueError("rate_reduction needs labels: pass labels=... (the callback passes the probe targets)")
        return IDEstimate(rate_reduction(x, labels, self.eps, self.normalize))


def check_resampling(n_resamples: int, fraction: float) -> None:
    """Reject resampling options that cannot give a spread."""
    if n_resamples < 0:
        raise ValueError(f"n_resamples={n_resamples} must be >= 0 (0 = a single estimate on all points)")
    check_fraction(fraction)


def make_estimator(spec: str | Mapping[str, Any]) -> Estimator:
    """Estimator from a name ("twonn", "MLE", "coding_rate") or a mapping {name: ..., layers: [...], **options}."""
    options = {} if isinstance(spec, str) else dict(spec)
    name = spec if isinstance(spec, str) else options.pop("name", None)
    if not isinstance(name, str):
        raise ValueError(f"estimator {spec!r} has no name; write e.g. 'twonn' or {{name: MLE, n_resamples: 5}}")
    layers = options.pop("layers", None)
    if layers is not None and (isinstance(layers, str) or not isinstance(layers, Sequence) or not layers):
        raise ValueError(f"estimator {name!r}: layers={layers!r} must be a non-empty list of layer names or globs")
    by_lower = {n.lower(): n for n in valid_names()}
    if name.lower() not in by_lower:
        raise ValueError(f"unknown estimator {name!r}; valid names: {valid_names()}")
    canonical = by_lower[name.lower()]
    native = {"twonn": TwoNNEstimator, "gride": GrideEstimator, "id_scaling": ScalingEstimator,
              "overlap": OverlapEstimator, "coding_rate": CodingRateEstimator,
              "rate_reduction": RateReductionEstimator}
    if canonical in native:
        try:
            estimator = native[canonical](**options)
        except TypeError as error:
            raise ValueError(f"estimator {canonical!r} does not take {sorted(options)}: {error}; its arguments are "
                             f"{inspect.signature(native[canonical].__init__)}") from error
    else:
        estimator = SkdimEstimator(canonical, **options)
    estimator.layers = None if layers is None else [str(p) for p in layers]
    return estimator


def estimate(x: torch.Tensor, estimator: str | Mapping[str, Any] = "twonn",
             labels: torch.Tensor | None = None) -> IDEstimate:
    """One-call interface: the named estimator's value (and std when it resamples) on points x (N, F)."""
    return make_estimator(estimator)(x, labels)
