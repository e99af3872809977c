"""Loss terms of the deep unmixing models. Inputs: spectra ``x, x̂ (batch, L)``, abundances
``a (batch, k)``; every term returns a scalar (mean over the batch)."""

from __future__ import annotations

import torch

UNIFORM_MODES = ("batch_mean", "pixel")


def mse_sum(x_hat: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """``(1/N) Σ_i ‖x̂_i − x_i‖²`` (sum over bands, mean over pixels)."""
    return torch.square(x_hat - x).sum(dim=1).mean()


def mse_mean(x_hat: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """Mean squared error over all entries (torch's ``mse_loss``)."""
    return torch.square(x_hat - x).mean()


def spectral_angle(x_hat: torch.Tensor, x: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    """Mean spectral angle (rad); cosine clamped to [−1 + 1e-7, 1 − 1e-7] for a finite
    gradient."""
    cos = (x_hat * x).sum(dim=1) / (x_hat.norm(dim=1) * x.norm(dim=1) + eps)
    return torch.acos(cos.clamp(-1.0 + 1e-7, 1.0 - 1e-7)).mean()


def uniformity(a: torch.Tensor, mode: str = "batch_mean") -> torch.Tensor:
    """Distance to equal use of the k endmembers.

    ``batch_mean``: ``‖ā − 1/k‖²`` with ``ā`` the batch-mean abundance (endmember balance);
    ``pixel``: ``(1/N) Σ_i ‖a_i − 1/k‖²`` (the paper's printed per-pixel form).
    """
    k = a.shape[1]
    if mode == "pixel":
        return torch.square(a - 1.0 / k).sum(dim=1).mean()
    return torch.square(a.mean(dim=0) - 1.0 / k).sum()


def entropy(a: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    """Mean abundance entropy ``−Σ_k a_k log(a_k + ε)`` (nats)."""
    return -(a * torch.log(a + eps)).sum(dim=1).mean()


def sparsity_l12(a: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    """Mean L1/2 sparsity ``Σ_k sqrt(a_k + ε)`` (L1 is constant on the simplex)."""
    return torch.sqrt(a + eps).sum(dim=1).mean()
