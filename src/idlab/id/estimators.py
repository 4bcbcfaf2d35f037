"""Estimators by name: GPU TwoNN, any scikit-dimension estimator, coding rate; one call signature for all."""
from __future__ import annotations

import inspect
from collections.abc import Mapping
from typing import Any

import numpy as np
import skdim
import torch

from idlab.id.coding_rate import check_eps, coding_rate, rate_reduction
from idlab.id.knn import check_points
from idlab.id.twonn import IDEstimate, check_fit_options, check_fraction, twonn, twonn_bootstrap

NATIVE = ("twonn", "coding_rate", "rate_reduction")


def skdim_names() -> list[str]:
    """Names of scikit-dimension's estimator classes (skdim.id)."""
    return sorted(n for n, obj in vars(skdim.id).items() if inspect.isclass(obj) and hasattr(obj, "fit"))


def valid_names() -> list[str]:
    """Every estimator name `make_estimator` accepts (case-insensitive); TwoNN is the GPU-neighbour one."""
    return list(NATIVE) + [n for n in skdim_names() if n.lower() not in NATIVE]


class Estimator:
    """A measure of a point cloud: `tag` names it in logs, `is_id` says whether it is an intrinsic dimension."""

    tag: str = ""
    is_id: bool = True
    needs_labels: bool = False

    def __call__(self, x: torch.Tensor, labels: torch.Tensor | None = None) -> IDEstimate:
        """Estimate on points x (N, F); labels are used only by label-aware measures."""
        raise NotImplementedError


class TwoNNEstimator(Estimator):
    """TwoNN with exact GPU neighbours and scikit-dimension's fit; bootstrap mean ± std when n_resamples > 0."""

    def __init__(self, discard_fraction: float = 0.1, method: str = "linear", n_resamples: int = 20,
                 fraction: float = 0.9, seed: int = 0, tag: str = "twonn") -> None:
        """Store and validate the fit and resampling options."""
        check_fit_options(discard_fraction, method)
        check_resampling(n_resamples, fraction)
        self.discard_fraction, self.method, self.tag = discard_fraction, method, tag
        self.n_resamples, self.fraction, self.seed = n_resamples, fraction, seed

    def __call__(self, x: torch.Tensor, labels: torch.Tensor | None = None) -> IDEstimate:
        """TwoNN ID of x, with std over resamples when resampling is on."""
        if self.n_resamples == 0:
            return IDEstimate(twonn(x, self.discard_fraction, self.method))
        return twonn_bootstrap(x, self.n_resamples, self.fraction, self.seed, self.discard_fraction, self.method)


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
    """Estimator from a name ("twonn", "MLE", "coding_rate") or a mapping {name: ..., **options}."""
    options = {} if isinstance(spec, str) else dict(spec)
    name = spec if isinstance(spec, str) else options.pop("name", None)
    if not isinstance(name, str):
        raise ValueError(f"estimator {spec!r} has no name; write e.g. 'twonn' or {{name: MLE, n_resamples: 5}}")
    by_lower = {n.lower(): n for n in valid_names()}
    if name.lower() not in by_lower:
        raise ValueError(f"unknown estimator {name!r}; valid names: {valid_names()}")
    canonical = by_lower[name.lower()]
    native = {"twonn": TwoNNEstimator, "coding_rate": CodingRateEstimator, "rate_reduction": RateReductionEstimator}
    if canonical in native:
        try:
            return native[canonical](**options)
        except TypeError as error:
            raise ValueError(f"estimator {canonical!r} does not take {sorted(options)}: {error}; its arguments are "
                             f"{inspect.signature(native[canonical].__init__)}") from error
    return SkdimEstimator(canonical, **options)


def estimate(x: torch.Tensor, estimator: str | Mapping[str, Any] = "twonn",
             labels: torch.Tensor | None = None) -> IDEstimate:
    """One-call interface: the named estimator's value (and std when it resamples) on points x (N, F)."""
    return make_estimator(estimator)(x, labels)
