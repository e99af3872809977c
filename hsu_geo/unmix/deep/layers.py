"""Building blocks shared by the deep unmixing networks (per-pixel, inputs ``(batch, C)``)."""

from __future__ import annotations

import torch
from torch import nn

ABUNDANCE_ACTIVATIONS = ("softmax", "absnorm")


def abundance_activation(z: torch.Tensor, kind: str) -> torch.Tensor:
    """Map logits ``z (batch, k)`` onto the simplex (ANC + ASC).

    ``softmax``: softmax over k. ``absnorm`` (NAE): ``|z| / Σ|z|``, with 1e-8 added to every
    entry so an all-zero row maps to equal abundances instead of 0/0.
    """
    if kind == "softmax":
        return torch.softmax(z, dim=1)
    a = z.abs() + 1e-8
    return a / a.sum(dim=1, keepdim=True)


class ChannelAttention(nn.Module):
    """Channel attention on a feature vector ``h (batch, C)`` (cresdae.md §3.2).

    ``w = σ(W₂ ReLU(W₁ h + b₁) + b₂)``, ``h ← w ⊙ h`` with ``C // reduction`` hidden units.
    ``mode="cbam"`` adds the average- and max-pooled descriptors, which for a 1×1 map are both
    ``h``: ``w = σ(2·MLP(h))``.
    """

    def __init__(self, channels: int, reduction: int = 16, mode: str = "se") -> None:
        super().__init__()
        hidden = max(1, channels // reduction)
        self.fc1 = nn.Linear(channels, hidden)
        self.fc2 = nn.Linear(hidden, channels)
        self.mode = mode

    def weights(self, h: torch.Tensor) -> torch.Tensor:
        """Attention weights ``(batch, C)`` in (0, 1)."""
        m = self.fc2(torch.relu(self.fc1(h)))
        return torch.sigmoid(2.0 * m if self.mode == "cbam" else m)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return h * self.weights(h)


class ResidualBlock(nn.Module):
    """``h ← h + ReLU(f(h))`` with ``f`` = ``layers`` Linear(C → C) layers (ReLU between)."""

    def __init__(self, channels: int, layers: int = 1) -> None:
        super().__init__()
        self.linears = nn.ModuleList(nn.Linear(channels, channels) for _ in range(layers))

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        f = h
        for i, lin in enumerate(self.linears):
            f = lin(f)
            if i < len(self.linears) - 1:
                f = torch.relu(f)
        return h + torch.relu(f)


class SparseReLU(nn.Module):
    """``max(0, x − α)`` with a learnable per-unit threshold ``α ≥ 0`` (init 0; DAEU)."""

    def __init__(self, units: int) -> None:
        super().__init__()
        self.alpha = nn.Parameter(torch.zeros(units))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu(x - self.alpha.clamp_min(0.0))


class SumToOne(nn.Module):
    """Zero entries below ``threshold`` and divide by the row sum (DAEU); an all-zero row
    becomes equal abundances so the output always lies on the simplex."""

    def __init__(self, threshold: float = 1e-7) -> None:
        super().__init__()
        self.threshold = threshold

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.where(x < self.threshold, torch.zeros_like(x), x)
        total = x.sum(dim=1, keepdim=True)
        uniform = torch.full_like(x, 1.0 / x.shape[1])
        return torch.where(total > 0, x / total.clamp_min(1e-30), uniform)
