"""DFFN's feature fusion (FFM, dffn.md §4) without N x N matrices.

The paper enhances the image ``Y (B, N)`` with a band similarity ``S_B = exp(-D_B)`` (B x B)
and a pixel similarity ``S_P = exp(-D_P)`` (N x N)::

    Y_B = S_B Y,   Y_P = Y S_P,   Ỹ = minmax(w minmax(Y_B) + (1 - w) minmax(Y_P))

Column ``j`` of ``Y_P`` is ``Σ_r y_r exp(-‖y_j - y_r‖²)``: a function of the pixel ``y_j`` and
of the set of *reference* pixels ``r`` (the whole scene in the paper). So, once the reference
set, ``S_B`` and the three min/max pairs are fixed, the FFM is a per-pixel map
(:class:`Fusion`); :func:`pixel_similarity_product` evaluates it by blocks of query pixels,
holding at most ``m x block`` similarities (``m`` reference pixels), never ``N x N``.
``D_B`` comes from the band Gram matrix ``Σ_j y_j y_jᵀ`` (B x B), also accumulated by blocks.
Distances use ``‖u‖² + ‖v‖² − 2 uᵀv`` (the authors' expansion) clipped to
``[0, MAX_DISTANCE]`` (no subnormal similarities).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

#: similarity entries (reference x query pixels) per block: 2 M floats = 8 MiB, so the block
#: stays in cache between its product and its exponential (1024 reference pixels, 300 bands,
#: one thread: 0.50 s -> 0.37 s per 23,000 pixels against 64 MiB blocks)
BLOCK_ENTRIES = 1 << 21
#: fewest query pixels per block, so a large reference set is not streamed for a few columns
MIN_BLOCK_COLUMNS = 128
#: largest squared distance kept: exp(-87) = 1.6e-38 is about float32's smallest normal number;
#: larger distances would give subnormal similarities, which x86 multiplies 10-100x slower (the
#: all-zero reference of an untrained network ran at half the speed), for a change below 1e-37
MAX_DISTANCE = 87.0


def band_distance(Y: torch.Tensor, factor: float = 1.0, block: int = 65536) -> torch.Tensor:
    """``D_B (B, B)`` of pixels ``Y (B, n)``: ``factor · Σ_j (y_ij − y_kj)²`` (float64 Gram
    matrix accumulated over blocks of ``block`` pixels)."""
    B, n = Y.shape
    G = torch.zeros((B, B), dtype=torch.float64, device=Y.device)
    for s in range(0, n, block):
        Yb = Y[:, s:s + block].double()
        G += Yb @ Yb.T
    d = torch.diagonal(G)
    D = (d[:, None] + d[None, :] - 2.0 * G).clamp(min=0.0) * factor
    return D.float()


def pixel_similarity_product(Q: torch.Tensor, R: torch.Tensor,
                             block: int | None = None) -> torch.Tensor:
    """``Y_P (B, n)``: column ``j`` is ``Σ_r R[:, r] exp(−‖Q[:, j] − R[:, r]‖²)`` for query
    pixels ``Q (B, n)`` and reference pixels ``R (B, m)``; computed by blocks of query columns
    so at most ``m x block`` similarities exist at once (``block`` default: ``BLOCK_ENTRIES //
    m``, at least ``MIN_BLOCK_COLUMNS``). With ``Q = R = Y`` this is the paper's ``Y S_P``."""
    m = R.shape[1]
    step = max(1, block or max(MIN_BLOCK_COLUMNS, BLOCK_ENTRIES // max(m, 1)))
    r2 = torch.square(R).sum(dim=0)  # (m,)
    out = torch.empty_like(Q)
    for s in range(0, Q.shape[1], step):
        Qb = Q[:, s:s + step]
        # (m, b) distances in one fused product, then exp(-D) in place: one m x b buffer
        D = torch.addmm(r2[:, None] + torch.square(Qb).sum(dim=0)[None, :], R.T, Qb,
                        alpha=-2.0)
        torch.mm(R, D.clamp_(0.0, MAX_DISTANCE).neg_().exp_(), out=out[:, s:s + step])
    return out


def _range(Z: torch.Tensor) -> tuple[float, float]:
    lo, hi = float(Z.min()), float(Z.max())
    return lo, hi if hi > lo else lo + 1.0


@dataclass
class Fusion:
    """The fitted FFM: ``S_B (B, B)``, reference pixels ``R (B, m)``, weight ``w`` and the
    min/max pairs of ``Y_B``, ``Y_P`` and of the fused image (``limits`` (6,)), all measured on
    the calibration pixels. :meth:`apply` maps any pixels ``(B, n)`` to ``Ỹ (B, n)``."""

    S_B: torch.Tensor
    R: torch.Tensor
    w: float
    limits: torch.Tensor

    @staticmethod
    def calibrate(Y: torch.Tensor, R: torch.Tensor, w: float,
                  band_factor: float = 1.0) -> tuple[Fusion, torch.Tensor]:
        """Fit on calibration pixels ``Y (B, n)`` (the whole scene for the exact form) with
        reference pixels ``R (B, m)``; ``D_B`` is multiplied by ``band_factor``. Returns the
        fusion and ``Ỹ`` of ``Y``."""
        S_B = torch.exp(-band_distance(Y, band_factor))
        Yb = S_B @ Y
        (b0, b1), (p0, p1) = _range(Yb), (0.0, 1.0)
        Z = w * (Yb - b0) / (b1 - b0)
        if w < 1.0:  # w = 1: the spectral branch only, no pixel similarity needed
            Yp = pixel_similarity_product(Y, R)
            p0, p1 = _range(Yp)
            Z = Z + (1.0 - w) * (Yp - p0) / (p1 - p0)
            del Yp
        z0, z1 = _range(Z)
        limits = torch.tensor([b0, b1, p0, p1, z0, z1], dtype=torch.float64)
        return Fusion(S_B, R, float(w), limits), (Z - z0) / (z1 - z0)

    def apply(self, Y: torch.Tensor) -> torch.Tensor:
        """``Ỹ (B, n)`` of pixels ``Y (B, n)`` (per pixel: blocks do not interact). The three
        min/max scalings are folded into one affine map, ``Ỹ = α S_B Y + β Y_P + γ``, so the
        ``(B, n)`` arrays are passed over twice instead of eight times."""
        b0, b1, p0, p1, z0, z1 = (float(v) for v in self.limits)
        w = self.w
        alpha = w / ((b1 - b0) * (z1 - z0))
        beta = (1.0 - w) / ((p1 - p0) * (z1 - z0)) if w < 1.0 else 0.0
        gamma = -(w * b0 / (b1 - b0) + z0) / (z1 - z0) - beta * p0
        Z = torch.addmm(torch.full((1, 1), gamma, dtype=Y.dtype, device=Y.device),
                        self.S_B.to(Y.dtype), Y, alpha=alpha)
        if w < 1.0:  # w = 1: the spectral branch only
            Z.add_(pixel_similarity_product(Y, self.R), alpha=beta)
        return Z
