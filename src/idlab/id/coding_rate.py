"""Coding rate R_ε(Z) and rate reduction ΔR (Yu et al. 2020, MCR²) of a set of representations."""
from __future__ import annotations

import torch

from idlab.id.knn import check_points

_CHUNK_ELEMENTS = 2**25


def check_eps(eps: float) -> None:
    """Reject a distortion ε that makes the rate undefined."""
    if not eps > 0:
        raise ValueError(f"eps={eps} must be > 0 (MCR² uses 0.5 on unit-norm features)")


def coding_rate(z: torch.Tensor, eps: float = 0.5, normalize: bool = True) -> float:
    """R_ε(Z) = ½ logdet(I + F/(N ε²) ZᵀZ) in nats for rows z (N, F); rows scaled to unit norm if `normalize`."""
    check_eps(eps)
    z = prepare(z, normalize)
    return rate_of(z, eps)


def rate_reduction(z: torch.Tensor, labels: torch.Tensor, eps: float = 0.5, normalize: bool = True) -> float:
    """ΔR = R_ε(Z) − Σ_k (n_k/N) R_ε(Z_k): how much more the whole set costs to code than its classes apart."""
    check_eps(eps)
    z = prepare(z, normalize)
    labels = torch.as_tensor(labels).to(z.device).flatten()
    if labels.numel() != z.shape[0]:
        raise ValueError(f"got {labels.numel()} labels for {z.shape[0]} points; pass one label per row of z")
    n = z.shape[0]
    within = sum((labels == k).sum().item() / n * rate_of(z[labels == k], eps) for k in torch.unique(labels))
    return rate_of(z, eps) - within


def prepare(z: torch.Tensor, normalize: bool) -> torch.Tensor:
    """Validated (N, F) float tensor, optionally with each nonzero row scaled to unit norm."""
    z = check_points(z, min_points=1)
    if normalize:
        z = z / torch.linalg.vector_norm(z, dim=1, keepdim=True).clamp_min(torch.finfo(z.dtype).tiny)
    return z


def rate_of(z: torch.Tensor, eps: float) -> float:
    """½ logdet(I + α G), α = F/(N ε²), G the smaller of ZZᵀ and ZᵀZ (Sylvester); Cholesky in float64."""
    n, features = z.shape
    gram = gram_matrix(z if n <= features else z.T)
    alpha = features / (n * eps**2)
    identity = torch.eye(gram.shape[0], dtype=torch.float64, device=gram.device)
    factor = torch.linalg.cholesky(identity + alpha * gram)
    return float(torch.log(torch.diagonal(factor)).sum())


def gram_matrix(a: torch.Tensor) -> torch.Tensor:
    """a aᵀ in float64, accumulated over column chunks so a float64 copy of `a` is never made whole."""
    step = max(1, _CHUNK_ELEMENTS // a.shape[0])
    gram = torch.zeros(a.shape[0], a.shape[0], dtype=torch.float64, device=a.device)
    for s in range(0, a.shape[1], step):
        block = a[:, s : s + step].double()
        gram += block @ block.T
    return gram
