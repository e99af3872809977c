"""DFFN — Dual-Feature Fusion Network (Tao, Koirala, Plaza, Scheunders, IEEE TGRS 62:5540113,
2024), dffn.md.

Network [P,C]: the feature-fusion module (FFM, :mod:`hsu_geo.unmix.deep.dffn_fusion`) turns the
scene ``Y (B, N)`` into ``Ỹ = minmax(w minmax(S_B Y) + (1 − w) minmax(Y S_P))`` with
``S_B = exp(−D_B)`` (band x band) and ``S_P = exp(−D_P)`` (pixel x pixel); the abundance module
(AEM) is four 5x5 convolutions with BatchNorm and ReLU, ``B → 128 → 64 → R`` (``Â``) ``→ B``
(``Ŷ1``); the endmember module (EEM) maps ``Ŷ1`` reshaped to ``(B, N)`` through fully connected
layers ``N → 100 → 30 → R`` with sigmoids to ``Ê (B, R)``; ``Ŷ2 = Ê Â``. Loss
``SAD(Y, Ŷ2) + b (ASC + ANC) + c SAD(Ŷ1, Ŷ2)``; Adam lr 1e-3, weight decay 1e-6, StepLR 245 /
0.9, keep the lowest-loss state; abundances divided by their sum for output.

Two forms (``--set fusion=exact|sampled|auto``; default ``auto``):

* **exact** (the reference, ``input = "image"``): trained on the whole scene (one image,
  full batch) with the paper's EEM (first layer ``N`` inputs: it trains only on this scene;
  after training only its output ``Ê`` is kept, so a saved model holds no ``N``-sized
  weights, but it does hold the scene's valid pixels, ``N x B``). ``Y S_P`` is computed
  block-wise (``exp(−D)`` of a block of pixels against all pixels, then a product), never as
  an ``N x N`` matrix, and ``S_B`` from the band Gram matrix. Since column ``j`` of ``Y S_P``
  depends only on ``y_j`` and the scene's pixels, the fitted FFM (scene pixels, ``S_B``, the
  min/max constants) is a per-pixel map, so inference runs block by block with a halo of the
  AEM's receptive field (3 convolutions: 6 pixels) and reproduces the full-image forward
  pass. Refused above ``exact_max_pixels`` (100 000 a priori:
  the paper's largest scene, Urban, has 94 249; cost ``O(N² B)`` at fit and again at
  inference, and the scene's pixels are kept in the model).
* **sampled** (the full-scene form, ``input = "patches"``): the non-local sum runs over
  ``ref_pixels`` (1024) pixels drawn (seeded) from the training patches instead of all ``N``:
  an unbiased estimate of ``Y S_P`` up to a constant factor (which the min/max removes); the
  cost is ``O(m B)`` per pixel, the memory ``m x B`` (a block of ``BLOCK_ENTRIES``
  similarities). ``D_B`` is scaled to ``band_pixels`` (10 000 ≈ the paper's scenes) pixels,
  because the paper's sum over all pixels makes ``S_B`` the identity on a large scene. The
  min/max constants are those of the training pixels. The EEM becomes a learned ``(B, R)``
  matrix through a sigmoid (same range as the paper's output) initialised from ``M0``, so
  nothing depends on ``N``. Trained on ``n_patches`` seeded ``patch_size``² windows,
  ``batch_size`` per step; the loss covers each window's interior (8 pixels from its edge,
  where ``Ŷ1`` is defined).
* **auto**: exact when the scene has at most ``exact_max_pixels`` pixels, else sampled.

Project choices [I]: unpadded convolutions (the paper pads with zeros) with the scene edge
mirrored, so the result does not depend on ``--chunk-size``; ``epochs`` (one optimiser step
each, as in the code's full-batch loop) 300 instead of 1500 so a CPU fit takes minutes
(``--set epochs=1500``); the loss weights of the released Samson script (b 0.01, c 0.001,
w 0.5) for every scene; BatchNorm in eval mode at inference (as the code); the endmembers are
multiplied by one least-squares factor after training (the angle losses leave their scale
free) so they and the reconstruction RMSE are in scene units; they are matched to ``M0``
(Hungarian on SAD) for naming only. Nodata pixels (filled with the mean training spectrum)
are left out of the loss, of the reference set and of the min/max constants.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import xarray as xr
from torch import nn

from hsu_geo.errors import ConfigError, InvalidSceneError
from hsu_geo.unmix.deep.base import DeepConfig, check_choice
from hsu_geo.unmix.deep.dffn_fusion import Fusion
from hsu_geo.unmix.deep.patch import PatchDeepUnmixer, masked_spectral_angle

FORMS = ("auto", "exact", "sampled")


@dataclass(frozen=True)
class DFFNConfig(DeepConfig):
    """DFFN settings: ``fusion`` ``auto|exact|sampled`` (module docstring),
    ``exact_max_pixels`` 100 000, ``ref_pixels`` 1024 and ``band_pixels`` 10 000 (sampled
    form) [I; ``ref_pixels`` from the FFM's own error, no ground truth:
    ``benchmarks/dffn_forms.py --part ffm``]; ``w`` 0.5, loss weights ``loss_b`` 0.01 and
    ``loss_c`` 0.001 [C, Samson];
    ``kernel`` 5, ``features`` (128, 64), ``eem`` ``auto`` (``mlp`` for exact, ``matrix`` for
    sampled) with ``eem_hidden`` 100 [C] (the paper's text: 1000); Adam ``lr_encoder`` (AEM)
    and ``lr_decoder`` (EEM) 1e-3, ``weight_decay`` 1e-6, StepLR ``lr_step`` 245 steps x
    ``lr_gamma`` 0.9, ``keep_best`` [C]; ``epochs`` = optimiser steps, 300 [I] (code 1500);
    sampled form: ``n_patches`` 32 windows of ``patch_size`` 64 with ``min_valid`` 0.9,
    ``batch_size`` 2 per step (8192 pixels, about one Samson or Jasper image) [I]."""

    seed: int = 0
    epochs: int = 300
    batch_size: int = 2
    lr_encoder: float = 1e-3
    lr_decoder: float = 1e-3
    weight_decay: float = 1e-6
    keep_best: bool = True
    shuffle: bool = True
    fusion: str = "auto"
    exact_max_pixels: int = 100_000
    ref_pixels: int = 1024
    band_pixels: int = 10_000
    w: float = 0.5
    loss_b: float = 0.01
    loss_c: float = 0.001
    kernel: int = 5
    features: tuple[int, int] = (128, 64)
    eem: str = "auto"
    eem_hidden: int = 100
    lr_step: int = 245
    lr_gamma: float = 0.9
    n_patches: int = 32
    patch_size: int = 64
    min_valid: float = 0.9

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.lr_schedule != "none":
            raise ConfigError(f"setting lr_schedule={self.lr_schedule!r}: dffn has its own "
                              "step schedule (the code's StepLR); change it with lr_step and "
                              "lr_gamma")
        check_choice("fusion", self.fusion, FORMS)
        check_choice("eem", self.eem, ("auto", "mlp", "matrix"))
        if self.eem == "mlp" and self.fusion == "sampled":
            raise ConfigError("setting eem=mlp needs fusion=exact (its first layer has one "
                              "input per scene pixel); use eem=matrix with fusion=sampled")
        if self.kernel < 1 or self.kernel % 2 == 0:
            raise ConfigError(f"setting kernel={self.kernel} must be an odd number >= 1")
        checks = {"exact_max_pixels": self.exact_max_pixels >= 1,
                  "ref_pixels": self.ref_pixels >= 1, "band_pixels": self.band_pixels >= 1,
                  "w": 0.0 <= self.w <= 1.0, "loss_b": self.loss_b >= 0,
                  "loss_c": self.loss_c >= 0,
                  "features": len(self.features) == 2 and min(self.features) >= 1,
                  "eem_hidden": self.eem_hidden >= 1, "lr_step": self.lr_step >= 1,
                  "lr_gamma": 0.0 < self.lr_gamma <= 1.0, "n_patches": self.n_patches >= 1,
                  "patch_size": self.patch_size >= 1, "min_valid": 0.0 < self.min_valid <= 1.0}
        for key, ok in checks.items():
            if not ok:
                raise ConfigError(f"setting {key}={getattr(self, key)!r} is out of range")


def _block(c_in: int, c_out: int, k: int) -> list[nn.Module]:
    return [nn.Conv2d(c_in, c_out, k), nn.BatchNorm2d(c_out), nn.ReLU()]


def mirror(x: torch.Tensor, p: int) -> torch.Tensor:
    """``x (b, c, H, W)`` with ``p`` pixels mirrored on each side, edge pixel repeated
    (``2 1 0 | 0 1 2``: dask's ``reflect``, the spatial engine's scene edge)."""
    if p == 0:
        return x
    iy = torch.from_numpy(np.pad(np.arange(x.shape[2]), p, mode="symmetric")).to(x.device)
    ix = torch.from_numpy(np.pad(np.arange(x.shape[3]), p, mode="symmetric")).to(x.device)
    return x[:, :, iy][:, :, :, ix]


class DFFNNet(nn.Module):
    """FFM buffers + AEM + EEM. ``encode(x (b, B, H, W))`` (scaled pixels) → sum-normalised
    ``Â (b, R, H − 2e, W − 2e)`` (``e = 3 (kernel // 2)``); ``decode(a)`` → ``Ê a`` with the
    final endmembers ``E_out (B, R)``. ``n_image``: pixels of the EEM's input (mlp form; 0:
    the matrix ``theta``); ``n_ref``: reference pixels of the FFM. The shapes that depend on
    the scene stay out of the state dict (``ref`` is a non-persistent buffer, saved by the
    unmixer; the mlp is dropped after training, its output kept in ``E_out``), so a config
    alone fixes the state dict's shapes."""

    def __init__(self, n_bands: int, k: int, cfg: DFFNConfig, eem: str, n_image: int,
                 n_ref: int) -> None:
        super().__init__()
        f1, f2 = cfg.features
        self.abundance = nn.Sequential(*_block(n_bands, f1, cfg.kernel),
                                       *_block(f1, f2, cfg.kernel), *_block(f2, k, cfg.kernel))
        self.restore = nn.Sequential(*_block(k, n_bands, cfg.kernel))
        self.eem_kind = eem
        self.theta = nn.Parameter(torch.zeros(n_bands, k))  # matrix EEM (unused with mlp)
        self.eem: nn.Module | None = None
        if eem == "mlp":
            h = cfg.eem_hidden
            self.eem = nn.Sequential(nn.Linear(n_image, h), nn.Sigmoid(), nn.Linear(h, 30),
                                     nn.Sigmoid(), nn.Linear(30, k), nn.Sigmoid())
        self.w = cfg.w
        self.register_buffer("S_B", torch.eye(n_bands))
        self.register_buffer("ref", torch.zeros(n_bands, n_ref), persistent=False)
        self.register_buffer("limits", torch.tensor([0.0, 1, 0, 1, 0, 1], dtype=torch.float64))
        self.register_buffer("E_out", torch.zeros(n_bands, k))
        self.register_buffer("perm", torch.arange(k))

    @property
    def fusion(self) -> Fusion:
        return Fusion(self.S_B, self.ref, self.w, self.limits)

    def set_fusion(self, fusion: Fusion) -> None:
        with torch.no_grad():
            self.S_B.copy_(fusion.S_B)
            self.ref = fusion.R.contiguous().clone()
            self.limits.copy_(fusion.limits)

    def fuse(self, x: torch.Tensor) -> torch.Tensor:
        """``Ỹ`` of ``x (b, B, H, W)`` (per pixel)."""
        b, L, H, W = x.shape
        flat = x.permute(1, 0, 2, 3).reshape(L, -1)
        return self.fusion.apply(flat).reshape(L, b, H, W).permute(1, 0, 2, 3)

    def live_endmembers(self, y1: torch.Tensor | None) -> torch.Tensor:
        """``Ê (B, R)`` in network order: the EEM of ``Ŷ1 (1, B, H, W)`` or the matrix."""
        if self.eem is not None:
            return self.eem(y1[0].reshape(y1.shape[1], -1))
        return torch.sigmoid(self.theta)

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        a = self.abundance(self.fuse(x))
        a = a / a.sum(dim=1, keepdim=True).clamp(min=1e-8)
        return a[:, self.perm]

    def decode(self, a: torch.Tensor) -> torch.Tensor:
        return torch.einsum("lk,bkhw->blhw", self.E_out, a[:, torch.argsort(self.perm)])

    def endmember_weight(self) -> torch.Tensor:
        return self.E_out[:, self.perm]


class DFFNUnmixer(PatchDeepUnmixer):
    name = "dffn"
    description = ("DFFN: band + non-local pixel similarity fusion, conv abundance net and "
                   "endmember net (exact on scenes <= 100k px, sampled non-local form beyond)")
    doi = "10.1109/TGRS.2024.3505292"
    input = "image"
    halo = 6  # 3 convolutions of 5 x 5; set per config
    Config = DFFNConfig

    def __init__(self, config: Any = None, device: str = "cpu") -> None:
        super().__init__(config, device)
        self.form: str | None = None  # "exact" / "sampled" once resolved
        # (n_image, n_ref) of the network to build; unfitted: the sampled form's
        self._dims = (0, self.config.ref_pixels)
        self._planned: str | None = None

    def radii(self) -> tuple[int, int]:
        return 3 * (self.config.kernel // 2), 0

    def hidden_width(self, n_bands: int, k: int) -> int:
        """The widest abundance-module convolution or the restore convolution (``B``)."""
        return max(*self.config.features, n_bands)

    # ---- which form ------------------------------------------------------------------------
    def resolve_form(self, n_pixels: int) -> str:
        """``exact`` or ``sampled`` for a scene of ``n_pixels``; ConfigError when ``exact`` is
        asked above ``exact_max_pixels``."""
        cfg = self.config
        limit = cfg.exact_max_pixels
        if cfg.fusion == "exact" and n_pixels > limit:
            raise ConfigError(
                f"dffn fusion=exact holds the whole scene's pixel similarity and is limited to "
                f"{limit} pixels (this scene: {n_pixels}); use --set fusion=sampled (the "
                "full-scene form) or unmix a smaller --window")
        if cfg.fusion == "auto":
            return "exact" if n_pixels <= limit else "sampled"
        return cfg.fusion

    def eem_kind(self) -> str:
        eem = self.config.eem
        if eem == "auto":
            return "mlp" if self.form == "exact" else "matrix"
        if eem == "mlp" and self.form != "exact":
            raise ConfigError("setting eem=mlp needs the exact form (one input per scene "
                              "pixel); this scene uses fusion=sampled — use eem=matrix")
        return eem

    def training_sample(self, cube: xr.DataArray) -> np.ndarray:
        """What ``fit`` needs from the scene ``cube (L, H, W)``: the whole image
        ``(1, L, H, W)`` for the exact form, seeded windows for the sampled form."""
        from hsu_geo.unmix.spatial import training_patches

        H, W = (int(s) for s in cube.shape[1:])
        self._planned = self.resolve_form(H * W)  # fit follows this choice
        if self._planned == "exact":
            return np.asarray(cube.values, dtype=np.float32)[None]
        return training_patches(cube, self)

    # ---- fitting ---------------------------------------------------------------------------
    def fit(self, Y: np.ndarray, M0: np.ndarray) -> None:
        """Fit on the whole image ``Y (1, L, H, W)`` (exact form; ``auto`` picks it for one
        image of at most ``exact_max_pixels``) or on patches ``Y (n, L, p, p)`` (sampled form);
        NaN marks nodata."""
        P = np.asarray(Y)
        if P.ndim != 4:
            raise InvalidSceneError(f"dffn trains on an image (1, L, H, W) or patches "
                                    f"(n, L, p, p); got an array of shape {P.shape}")
        n, _, ph, pw = P.shape
        cfg = self.config
        planned, self._planned = self._planned, None
        if planned is not None:  # decided on the scene by training_sample
            self.form = planned
        elif cfg.fusion == "auto":
            self.form = "exact" if n == 1 and ph * pw <= cfg.exact_max_pixels else "sampled"
        else:
            self.form = self.resolve_form(ph * pw)
            if self.form == "exact" and n != 1:
                raise InvalidSceneError(f"dffn fusion=exact trains on one whole image "
                                        f"(1, L, H, W); got {n} patches")
        self.input = "image" if self.form == "exact" else "patches"
        valid = np.isfinite(P).all(axis=1)
        n_ref = int(valid.sum()) if self.form == "exact" else cfg.ref_pixels
        n_image = ph * pw if self.eem_kind() == "mlp" else 0
        self._dims = (n_image, max(1, n_ref))
        if self.form == "sampled" and min(ph, pw) <= 8 * (cfg.kernel // 2):
            raise InvalidSceneError(
                f"dffn fusion=sampled trains on windows larger than {8 * (cfg.kernel // 2)} "
                f"pixels (its loss needs Ŷ1); got {ph} x {pw} — raise --set patch_size or "
                "unmix a larger scene")
        super().fit(P, M0)
        e = 0 if self.form == "exact" else 4 * (cfg.kernel // 2)  # loss region
        self.fit_info.update(form=self.form, eem=self.eem_kind(), reference_pixels=n_ref,
                             training_pixels=int(valid[:, e:ph - e, e:pw - e].sum()))

    def build_network(self, n_bands: int, k: int) -> nn.Module:
        n_image, n_ref = self._dims
        return DFFNNet(n_bands, k, self.config, "mlp" if n_image else "matrix", n_image, n_ref)

    def _fusion_inputs(self, net: DFFNNet, X: torch.Tensor) -> torch.Tensor:
        """Calibrate the FFM on the training pixels of ``X (n, L + 1, p, p)`` and return the
        training tensor ``(n, 2 L + 1, ·, ·)`` = ``Ỹ``, ``Y`` and the valid mask (mirrored by
        4 kernel radii for the exact form, so ``Ŷ1`` covers the whole image)."""
        cfg = self.config
        L = X.shape[1] - 1
        valid = X[:, L] > 0.5
        Yv = X[:, :L].permute(1, 0, 2, 3)[:, valid]  # (L, n valid)
        if self.form == "exact":
            R, factor = Yv, 1.0
        else:
            gen = torch.Generator().manual_seed(cfg.seed * 7919 + 17)
            m = min(cfg.ref_pixels, Yv.shape[1])
            pick = torch.randperm(Yv.shape[1], generator=gen)[:m].sort().values
            R = Yv[:, pick.to(Yv.device)]
            if m < cfg.ref_pixels:  # tiny samples: repeat the reference pixels (same sum)
                R = R[:, torch.arange(cfg.ref_pixels, device=R.device) % m]
            factor = cfg.band_pixels / Yv.shape[1]
        fusion, Zv = Fusion.calibrate(Yv, R, cfg.w, factor)
        net.set_fusion(fusion)
        if self.form == "exact":  # one image: calibrate already fused its valid pixels
            Yt = torch.empty_like(X[:, :L])
            Yt[0][:, valid[0]] = Zv.to(Yt.dtype)
            if not bool(valid.all()):  # filled nodata pixels, fused like any pixel
                Yt[0][:, ~valid[0]] = net.fusion.apply(X[0, :L][:, ~valid[0]])
        else:
            Yt = torch.cat([net.fuse(X[i:i + 1, :L]) for i in range(X.shape[0])])
        del Zv
        T = torch.cat([Yt, X], dim=1)
        return mirror(T, 4 * (cfg.kernel // 2)) if self.form == "exact" else T

    def _fit_stages(self, net: DFFNNet, X: torch.Tensor, M0: np.ndarray) -> None:
        cfg = self.config
        L, k = X.shape[1] - 1, M0.shape[0]
        r = cfg.kernel // 2
        if net.eem_kind == "matrix":  # the full-scene EEM starts from M0 (scaled units)
            with torch.no_grad():
                net.theta.copy_(torch.logit(torch.from_numpy(
                    np.clip(M0.T, 1e-3, 1 - 1e-3).astype(np.float32))))
        T = self._fusion_inputs(net, X)
        b, c = cfg.loss_b, cfg.loss_c

        def forward(tb: torch.Tensor) -> tuple[torch.Tensor, ...]:
            yt, y, mask = tb[:, :L], tb[:, L:2 * L], tb[:, 2 * L]
            a = net.abundance(yt)
            y1 = net.restore(a)  # 4 radii inside the input
            a = self.crop(a, r)
            E = net.live_endmembers(y1)
            y2 = torch.einsum("lk,bkhw->blhw", E, a)
            return a, y1, y2, self.crop(y, 4 * r), mask[:, 4 * r:mask.shape[1] - 4 * r,
                                                           4 * r:mask.shape[2] - 4 * r]

        def loss(tb: torch.Tensor) -> tuple[torch.Tensor, dict[str, Any]]:
            a, y1, y2, y, mask = forward(tb)
            count = mask.sum().clamp(min=1.0)
            l_r = masked_spectral_angle(y2, y, mask)
            asc = ((a.sum(dim=1) - 1.0) ** 2 * mask).sum() / count
            anc = (torch.relu(-a) * mask[:, None]).sum() / (count * k)
            l_c = masked_spectral_angle(y1, y2, mask)
            total = l_r + b * (asc + anc) + c * l_c
            return total, {"sad": l_r.detach(), "asc": asc.detach(), "correction": l_c.detach()}

        groups = [{"params": list(net.abundance.parameters()) + list(net.restore.parameters()),
                   "lr": cfg.lr_encoder, "name": "aem"},
                  {"params": list(net.eem.parameters()) if net.eem_kind == "mlp"
                   else [net.theta], "lr": cfg.lr_decoder, "name": "eem"}]
        base_lr = [g["lr"] for g in groups]
        steps = [0]

        def schedule() -> None:  # StepLR per optimiser step (the code steps once per epoch)
            steps[0] += 1
            for g, lr in zip(groups, base_lr, strict=True):
                g["lr"] = lr * cfg.lr_gamma ** (steps[0] // cfg.lr_step)

        per_epoch = math.ceil(T.shape[0] / min(cfg.batch_size, T.shape[0]))
        epochs = math.ceil(cfg.epochs / per_epoch)
        self.run_stage("train", net, T, loss, groups,
                       self.train_settings(epochs, cfg.batch_size, seed_offset=5, main=True),
                       weight_decay=cfg.weight_decay, after_step=schedule)
        self.fit_info["endmember_rescale"] = self._finish(net, T, forward)
        if net.eem is not None:  # training only: its output is E_out
            self.fit_info["eem_inputs"] = int(net.eem[0].in_features)
            net.eem = None
        self.match_to_start(net, M0)

    def _finish(self, net: DFFNNet, T: torch.Tensor, forward: Any) -> float:
        """Store ``E_out = c Ê`` (eval mode): ``Ê`` of the EEM, ``c = Σ ŷ·y / Σ ŷ·ŷ`` with
        ``ŷ = Ê ā`` from the sum-normalised abundances over the valid training pixels."""
        net.eval()
        num = torch.zeros((), dtype=torch.float64, device=T.device)
        den = torch.zeros((), dtype=torch.float64, device=T.device)
        E = None
        with torch.no_grad():
            for s in range(0, T.shape[0], 4):
                a, y1, _, y, mask = forward(T[s:s + 4])
                if E is None:  # mlp: one whole image, so this is its Ê
                    E = net.live_endmembers(y1)
                a = a / a.sum(dim=1, keepdim=True).clamp(min=1e-8)
                yh = torch.einsum("lk,bkhw->blhw", E, a)
                num += ((yh * y).sum(dim=1) * mask).sum().double()
                den += ((yh * yh).sum(dim=1) * mask).sum().double()
            c = float(num / den) if float(den) > 0 else 1.0
            net.E_out.copy_(E * (c if c > 0 else 1.0))
        return round(c, 6)

    # ---- inference ---------------------------------------------------------------------------
    #: most pixels (halo rows included) per network call: the FFM's ``(L, n)`` temporaries and
    #: the first convolution's workspace grow with it
    TILE_PIXELS = 32768

    def abundances_image(self, block: np.ndarray, valid: np.ndarray | None = None
                         ) -> tuple[np.ndarray, np.ndarray]:
        """The fused block predict of :class:`PatchDeepUnmixer` by row tiles of at most
        ``TILE_PIXELS`` pixels, each with its ``halo`` rows: the FFM is per pixel and the
        convolutions are local, so the tiles give the block's result in bounded memory."""
        block = np.asarray(block)
        d = self.halo
        if block.ndim != 3 or min(block.shape[1:]) <= 2 * d:
            return super().abundances_image(block, valid)  # its checks and messages
        h, w = block.shape[1] - 2 * d, block.shape[2]
        rows = max(1, self.TILE_PIXELS // w - 2 * d)
        if rows >= h:
            return super().abundances_image(block, valid)
        parts = [super(DFFNUnmixer, self).abundances_image(block[:, r0:min(h, r0 + rows) + 2 * d])
                 for r0 in range(0, h, rows)]
        return (np.concatenate([p[0] for p in parts], axis=1),
                np.concatenate([p[1] for p in parts], axis=0))

    # ---- state -------------------------------------------------------------------------------
    def state(self) -> dict[str, Any]:
        state = super().state()
        state["form"] = self.form
        state["dffn_ref"] = self.network.ref.detach().cpu().clone()  # (B, m) scaled units
        return state

    def load_state(self, state: dict[str, Any]) -> None:
        ref = state["dffn_ref"]
        self._dims = (0, int(ref.shape[1]))
        self.form = state.get("form")
        self.input = "image" if self.form == "exact" else "patches"
        super().load_state(state)
        with torch.no_grad():
            self.network.ref.copy_(ref.to(self.network.ref.device))
