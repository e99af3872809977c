"""SSANU-Net — spatial–spectral adaptive nonlinear unmixing network (Chen, Zhang, Ren, Zhou,
Feng, Cheng, IEEE JSTARS 2023, doi 10.1109/JSTARS.2023.3323748); spec
``shared/models/ssanu_net.md`` ([P] paper, [I] reconstruction; no code was released).

Mixing model [P]: x = w_d1 · M a + w_d2 · Ψ(M, a), learnable ``w_d1, w_d2``.

Encoder [P, Table I], two streams fused by learnable scalars ``H = w_e1 · L_spa + w_e2 ·
L_spe``: spatial Conv 5×5 → BN → Dropout → ReLU → Conv 3×3 → BN → ReLU → Conv 1×1 → BN;
spectral the same with 1×1 convs; 128, 64, R channels. Abundances ``A = ReLU(H)`` (ANC; ASC
only encouraged by the loss) or a channel softmax (``abundance_act``). Decoder [P, Table II]:
linear Conv 1×1 (R → B, no bias [I]) plus nonlinear Conv 1×1 (R → B) → Conv 1×1 (B → B) →
Conv 1×1 (B → B) → ReLU, both first convs initialised with the start endmembers ``M0``.
Loss [P]: ``MSE + λ Σ_pixels |1 − Σ_r a_r| + γ ‖A‖_*`` (nuclear norm of the R × N abundance
matrix). Adam, 500 epochs, one step per epoch on the whole image [P/I].

Project choices [I]:

- Unpadded (valid) convolutions: the encoder's receptive-field radius is 2 + 1 = 3 (5×5 then
  3×3), the decoder's 0, so the halo is 3 and block results do not depend on chunking; the
  engine (:mod:`hsu_geo.unmix.spatial`) supplies the halo, reflecting at the scene edge. The
  paper's "same" padding is replaced by that reflection: training crops are reflect-padded by
  the halo (``train_padding``) so the loss covers every crop pixel, exactly the input the
  engine gives the scene's edge pixels at inference.
- Whole-image training → large crops (``input = "image"``): ``patch_size`` 128 (the paper's
  synthetic scenes are 128 × 128, its largest scene trained whole apart from Urban), up to
  ``n_patches`` 4 crops, all in one batch (``batch_size`` 4) → one optimiser step per epoch.
  A scene no larger than the crop (Samson 95², Jasper Ridge 100²) yields the same
  scene-sized window on every draw; identical crops are trained once, so such a scene trains
  on the whole image, one step per epoch, as in the paper. A large scene trains on 4 seeded
  128² crops (65 536 pixels per step, about the paper's Urban image). The engine's windows
  are ``min(patch_size, H) x min(patch_size, W)``, so a non-square scene smaller than the
  crop also trains on the whole image. The
  ``fill_spectrum`` for nodata is the mean of the valid pixels of the padded crops.
- Inference (:meth:`SSANUNetUnmixer.abundances_image`): eval mode with every BatchNorm folded
  into its convolution and the 1×1 convolutions as matrix products on ``(channels, pixels)``;
  per model call of ``n`` pixels about ``4 n (4 L + 2 F1 + 2 F2)`` bytes of temporaries
  (``F1, F2`` = ``features``). The 5×5 convolution (25·L·128 multiply-adds per pixel) is
  most of the cost.
- Hyper-parameters: the paper gives one row per dataset (§5): synthetic lr 1e-3,
  ``encoder_weights`` (0.7, 0.3), ``decoder_weights`` (0.8, 0.2), λ 1e-7; Samson lr 1e-2,
  (0.01, 0.99), (0.9, 0.1), λ 1e-5; Jasper Ridge lr 1e-3, (0.6, 0.4), (0.9, 0.1), λ 1e-7;
  Urban lr 1e-4, (0.7, 0.3), (0.8, 0.2), λ 1e-7 (γ 1e-5 everywhere). The default is the
  Samson row, chosen on a synthetic scene (40 × 40 noisy linear mixture of 3 USGS minerals,
  41 bands, seeds 0-1, start = true endmembers + 5 % noise; not on any real scene's truth):
  mean SAD 0.030 (Samson row) vs 0.078 (synthetic row) and 0.067 (Jasper row), abundance
  RMSE 0.17 vs 0.42 and 0.38. Its λ = 1e-5 is the only row whose sum-to-one term weighs
  noticeably: the term is a sum over pixels, and with λ = 1e-7 the abundances drift far
  from the simplex (mean |1 − Σa| ≈ 0.4 on Samson), which also breaks the â > 0.9
  read-out.
- Endmember read-out (``readout``): ``pixels`` (default) — for each endmember the mean input
  spectrum of the training pixels with â > 0.9 (``readout_threshold``), or of the top
  ``max(1, ⌈0.001 N⌉)`` pixels by â when none exceeds it — which is what the paper's SAD
  compares [P §3.3]; ``decoder`` — the linear-stream decoder weights (scene units), also
  recorded in ``fit_info["readout"]`` as their SAD to the pixel read-out. The learned
  channels are matched to ``M0`` (Hungarian on SAD of the linear-stream weights) so names
  stay with the closest start spectra.
- ``M0`` is the pipeline's extracted start (the spec says VCA of the input; pass
  ``--extractor vca`` for exactly that).
"""

from __future__ import annotations

import contextlib
import hashlib
import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from hsu_geo.errors import ConfigError, InvalidSceneError
from hsu_geo.unmix.deep._training import torch_threads
from hsu_geo.unmix.deep.base import DeepConfig, check_choice
from hsu_geo.unmix.deep.patch import PatchDeepUnmixer

#: pixels (halo included) per network call at inference when ``infer_batch`` is 0: row slabs
#: of the block bound the temporaries (about 4 n (4 L + 2 F1 + 2 F2) bytes for n pixels)
INFER_PIXELS_CPU = 32768
INFER_PIXELS_CUDA = 262144
STREAMS_ENCODER = ("both", "spatial", "spectral")
STREAMS_DECODER = ("both", "linear", "nonlinear")


@dataclass(frozen=True)
class SSANUNetConfig(DeepConfig):
    """SSANU-Net settings ([P] paper, [I] reconstruction).

    Training sample: up to ``n_patches`` seeded ``patch_size``² crops with at least
    ``min_valid`` valid pixels [I] (identical crops trained once), ``batch_size`` crops per
    step [I], ``epochs`` 500 [P], Adam [P] at ``lr_encoder`` / ``lr_decoder`` 1e-2 [P, the
    paper's Samson row; chosen on synthetic data, see the module docstring], no weight decay
    [I]. Network: ``features`` (128, 64) [P], ``spatial_kernels``
    (5, 3) [P], ``dropout`` 0.2 [I] (element-wise, block 1), ``conv_bias`` on the encoder [I],
    ``encoder_weights`` / ``decoder_weights`` initial fusion scalars [P, Samson row],
    ``clamp_fusion`` to [0, 1] after every step [I], ``abundance_act`` ``relu`` [P] or
    ``softmax``, ``nonlinear_inner_relu`` ReLU between the nonlinear decoder's convs too [I]
    (Table II: only after the last), ``encoder_streams`` / ``decoder_streams`` for the
    paper's ablations [I]. Loss: ``sum_weight`` λ 1e-5, ``nuclear_weight`` γ 1e-5 [P,
    Samson row]. ``train_padding`` ``reflect`` or ``none`` [I]. Read-out: ``readout``
    ``pixels`` [P] or ``decoder`` [I], ``readout_threshold`` 0.9 [P],
    ``readout_fallback`` 0.001 (fraction of pixels ranked by â when none passes) [I].
    """

    seed: int = 0
    epochs: int = 500
    batch_size: int = 4
    lr_encoder: float = 1e-2
    lr_decoder: float = 1e-2
    weight_decay: float = 0.0
    n_patches: int = 4
    patch_size: int = 128
    min_valid: float = 0.9
    features: tuple[int, int] = (128, 64)
    spatial_kernels: tuple[int, int] = (5, 3)
    dropout: float = 0.2
    conv_bias: bool = True
    encoder_weights: tuple[float, float] = (0.01, 0.99)
    decoder_weights: tuple[float, float] = (0.9, 0.1)
    clamp_fusion: bool = True
    abundance_act: str = "relu"
    nonlinear_inner_relu: bool = False
    encoder_streams: str = "both"
    decoder_streams: str = "both"
    sum_weight: float = 1e-5
    nuclear_weight: float = 1e-5
    train_padding: str = "reflect"
    readout: str = "pixels"
    readout_threshold: float = 0.9
    readout_fallback: float = 0.001

    def __post_init__(self) -> None:
        super().__post_init__()
        check_choice("abundance_act", self.abundance_act, ("relu", "softmax"))
        check_choice("encoder_streams", self.encoder_streams, STREAMS_ENCODER)
        check_choice("decoder_streams", self.decoder_streams, STREAMS_DECODER)
        check_choice("train_padding", self.train_padding, ("reflect", "none"))
        check_choice("readout", self.readout, ("pixels", "decoder"))
        for key in ("features", "spatial_kernels", "encoder_weights", "decoder_weights"):
            if len(tuple(getattr(self, key))) != 2:
                raise ConfigError(f"setting {key}={getattr(self, key)!r} needs two values, "
                                  f"e.g. --set {key}=a,b")
        if any(v < 1 or v % 2 == 0 for v in self.spatial_kernels):
            raise ConfigError(f"setting spatial_kernels={self.spatial_kernels!r} must be two "
                              "odd numbers >= 1")
        checks = {
            "n_patches": self.n_patches >= 1, "patch_size": self.patch_size >= 1,
            "min_valid": 0.0 < self.min_valid <= 1.0,
            "features": all(v >= 1 for v in self.features),
            "dropout": 0.0 <= self.dropout < 1.0,
            "encoder_weights": all(0.0 <= v <= 1.0 for v in self.encoder_weights),
            "decoder_weights": all(0.0 <= v <= 1.0 for v in self.decoder_weights),
            "sum_weight": self.sum_weight >= 0, "nuclear_weight": self.nuclear_weight >= 0,
            "readout_threshold": self.readout_threshold > 0.0,
            "readout_fallback": 0.0 < self.readout_fallback <= 1.0}
        for key, ok in checks.items():
            if not ok:
                raise ConfigError(f"setting {key}={getattr(self, key)!r} is out of range")


def _stream(n_bands: int, k: int, cfg: SSANUNetConfig, kernels: tuple[int, int]
            ) -> nn.Sequential:
    """One encoder stream: ``(b, L, H, W) -> (b, k, H - 2e, W - 2e)``, valid convolutions."""
    f1, f2 = cfg.features
    return nn.Sequential(
        nn.Conv2d(n_bands, f1, kernels[0], bias=cfg.conv_bias), nn.BatchNorm2d(f1),
        nn.Dropout(cfg.dropout), nn.ReLU(),
        nn.Conv2d(f1, f2, kernels[1], bias=cfg.conv_bias), nn.BatchNorm2d(f2), nn.ReLU(),
        nn.Conv2d(f2, k, 1, bias=cfg.conv_bias), nn.BatchNorm2d(k))


class SSANUNet(nn.Module):
    """``x (b, L, H, W)`` → abundances ``a (b, k, H − 2e, W − 2e)`` → ``x̂ (b, L, H − 2e,
    W − 2e)`` (``e`` = the spatial stream's radius; the decoder is 1×1)."""

    def __init__(self, n_bands: int, k: int, cfg: SSANUNetConfig) -> None:
        super().__init__()
        self.radius = sum(v // 2 for v in cfg.spatial_kernels)
        enc, dec = cfg.encoder_streams, cfg.decoder_streams
        self.spatial = (_stream(n_bands, k, cfg, tuple(cfg.spatial_kernels))
                        if enc in ("both", "spatial") else None)
        self.spectral = _stream(n_bands, k, cfg, (1, 1)) if enc in ("both", "spectral") else None
        if self.spatial is None:
            self.radius = 0
        self.w_e = nn.Parameter(torch.tensor([float(v) for v in cfg.encoder_weights]))
        self.w_d = nn.Parameter(torch.tensor([float(v) for v in cfg.decoder_weights]))
        self.linear = nn.Conv2d(k, n_bands, 1, bias=False) if dec in ("both", "linear") else None
        self.nonlinear = None
        if dec in ("both", "nonlinear"):
            inner = [nn.ReLU()] if cfg.nonlinear_inner_relu else []
            self.nonlinear = nn.Sequential(
                nn.Conv2d(k, n_bands, 1), *inner, nn.Conv2d(n_bands, n_bands, 1), *inner,
                nn.Conv2d(n_bands, n_bands, 1), nn.ReLU())
        self.softmax = cfg.abundance_act == "softmax"
        self.register_buffer("perm", torch.arange(k))

    def init_endmembers(self, M0: torch.Tensor) -> None:
        """First 1×1 conv of both decoder streams ← ``M0 (k, L)`` (scaled units) [P]."""
        w = M0.T[:, :, None, None].to(self.w_d)
        with torch.no_grad():
            if self.linear is not None:
                self.linear.weight.copy_(w)
            if self.nonlinear is not None:
                self.nonlinear[0].weight.copy_(w)

    def fused(self, x: torch.Tensor) -> torch.Tensor:
        """``H = w_e1 · L_spa + w_e2 · L_spe`` ``(b, k, H − 2e, W − 2e)``, channels in the
        network's own order."""
        e = self.radius
        h = None
        if self.spatial is not None:
            h = self.w_e[0] * self.spatial(x)
        if self.spectral is not None:
            s = self.spectral(x[:, :, e:x.shape[2] - e, e:x.shape[3] - e] if e else x)
            h = self.w_e[1] * s if h is None else h + self.w_e[1] * s
        return h

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        h = self.fused(x)
        a = torch.softmax(h, dim=1) if self.softmax else torch.relu(h)
        return a[:, self.perm]

    def decode(self, a: torch.Tensor) -> torch.Tensor:
        a = a[:, torch.argsort(self.perm)]
        out = None
        if self.linear is not None:
            out = self.w_d[0] * self.linear(a)
        if self.nonlinear is not None:
            n = self.w_d[1] * self.nonlinear(a)
            out = n if out is None else out + n
        return out

    def endmember_weight(self) -> torch.Tensor:
        """``(L, k)``: the linear stream's weights (else the nonlinear stream's first conv)."""
        conv = self.linear if self.linear is not None else self.nonlinear[0]
        return conv.weight[:, :, 0, 0][:, self.perm]

    @torch.no_grad()
    def folded(self) -> dict[str, Any]:
        """Eval-mode constants for :meth:`infer`: every conv with its BatchNorm folded in
        (``W' = W γ / σ``, ``b' = (b − μ) γ / σ + β``), 1×1 kernels as ``(out, in)``
        matrices."""
        def fold(conv: nn.Conv2d, bn: nn.BatchNorm2d | None, matrix: bool = True
                 ) -> tuple[torch.Tensor, ...]:
            w = conv.weight
            b = conv.bias if conv.bias is not None else torch.zeros(w.shape[0], dtype=w.dtype,
                                                                    device=w.device)
            if bn is not None:
                g = bn.weight / torch.sqrt(bn.running_var + bn.eps)
                w = w * g[:, None, None, None]
                b = (b - bn.running_mean) * g + bn.bias
            return (w[:, :, 0, 0] if matrix else w).contiguous(), b[:, None]

        out: dict[str, Any] = {"w_e": self.w_e.clone(), "w_d": self.w_d.clone()}
        for key in ("spatial", "spectral"):
            seq = getattr(self, key)
            out[key] = None if seq is None else [
                fold(seq[i], seq[i + 1], key == "spectral" or i == 7) for i in (0, 4, 7)]
        out["linear"] = None if self.linear is None else self.linear.weight[:, :, 0, 0]
        out["nonlinear"] = None if self.nonlinear is None else [
            fold(m, None) for m in self.nonlinear if isinstance(m, nn.Conv2d)]
        out["inner_relu"] = self.nonlinear is not None and len(self.nonlinear) > 4
        return out

    def infer(self, x: torch.Tensor, c: dict[str, Any]) -> tuple[torch.Tensor, torch.Tensor]:
        """Eval-mode forward of one image ``x (L, H, W)`` with the constants of
        :meth:`folded`: abundances ``(k, N)`` and reconstruction ``(L, N)`` of the ``N =
        (H − 2e)(W − 2e)`` interior pixels (equal to :meth:`encode` / :meth:`decode` up to
        float rounding; 1×1 convolutions as matrix products)."""
        e = self.radius
        L, H, W = x.shape
        h = None
        if c["spatial"] is not None:
            (w1, b1), (w2, b2), (w3, b3) = c["spatial"]
            z = torch.relu_(nn.functional.conv2d(x[None], w1, b1[:, 0]))
            z = torch.relu_(nn.functional.conv2d(z, w2, b2[:, 0]))[0]
            h = torch.addmm(b3, w3, z.reshape(z.shape[0], -1)).mul_(c["w_e"][0])
        xc = x[:, e:H - e, e:W - e].reshape(L, -1) if e else x.reshape(L, -1)
        if c["spectral"] is not None:
            (w1, b1), (w2, b2), (w3, b3) = c["spectral"]
            z = torch.relu_(torch.addmm(b1, w1, xc))
            z = torch.relu_(torch.addmm(b2, w2, z))
            s = torch.addmm(b3, w3, z).mul_(c["w_e"][1])
            h = s if h is None else h.add_(s)
        a = torch.softmax(h, dim=0) if self.softmax else torch.relu_(h)
        rec = None  # nonlinear stream first, then the linear one added in place: at most two
        if c["nonlinear"] is not None:  # (L, N) temporaries besides the input
            layers = c["nonlinear"]
            rec = a
            for i, (w, b) in enumerate(layers):
                rec = torch.addmm(b, w, rec)
                if i == len(layers) - 1 or c["inner_relu"]:
                    rec = torch.relu_(rec)
            rec = rec.mul_(c["w_d"][1])
        if c["linear"] is not None:
            if rec is None:
                rec = (c["linear"] @ a).mul_(c["w_d"][0])
            else:
                rec = rec.addmm_(c["linear"], a, alpha=float(c["w_d"][0]))
        return a[self.perm], rec

    def clamp_fusion(self) -> None:
        with torch.no_grad():
            self.w_e.clamp_(0.0, 1.0)
            self.w_d.clamp_(0.0, 1.0)


def nuclear_norm(a: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """‖A‖_* of the ``k × N`` matrix of abundances ``a (b, k, h, w)`` over the pixels where
    ``mask (b, h, w)`` is 1."""
    k = a.shape[1]
    flat = a.transpose(0, 1).reshape(k, -1)
    keep = mask.reshape(-1) > 0
    if not bool(keep.all()):
        flat = flat[:, keep]
    return torch.linalg.svdvals(flat).sum()


def unique_crops(P: np.ndarray) -> tuple[np.ndarray, int]:
    """``P (n, L, p, p)`` without exact duplicates (first occurrences, order kept) and the
    number dropped: a scene no larger than the crop gives the same window every draw."""
    seen: set[bytes] = set()
    keep = []
    for i in range(P.shape[0]):
        key = hashlib.blake2b(np.ascontiguousarray(P[i]).tobytes(), digest_size=16).digest()
        if key not in seen:
            seen.add(key)
            keep.append(i)
    return (P if len(keep) == P.shape[0] else P[keep]), P.shape[0] - len(keep)


class SSANUNetUnmixer(PatchDeepUnmixer):
    name = "ssanu_net"
    description = ("SSANU-Net: two-stream spatial/spectral conv encoder, linear + nonlinear "
                   "1x1 decoder with learnable fusion weights, whole-image training")
    doi = "10.1109/JSTARS.2023.3323748"
    input = "image"
    halo = 3  # default spatial kernels 5x5 then 3x3: 2 + 1; set per config
    Config = SSANUNetConfig

    def radii(self) -> tuple[int, int]:
        cfg = self.config
        e = sum(v // 2 for v in cfg.spatial_kernels) if cfg.encoder_streams != "spectral" else 0
        return e, 0

    def build_network(self, n_bands: int, k: int) -> nn.Module:
        return SSANUNet(n_bands, k, self.config)

    def hidden_width(self, n_bands: int, k: int) -> int:
        """The first encoder block (128) or the nonlinear decoder (two ``B``-channel maps)."""
        return max(self.config.features[0], 2 * n_bands)

    # ---- fitting -----------------------------------------------------------------------
    def fit(self, Y: np.ndarray, M0: np.ndarray) -> None:
        """Fit on crops ``Y (n, L, p, p)`` (NaN = nodata) from endmembers ``M0 (k, L)``:
        duplicates dropped, each crop reflect-padded by the halo (``train_padding``) so the
        loss covers all its pixels."""
        P = np.asarray(Y)
        dropped, d, size = 0, self.halo, None
        if P.ndim == 4:
            need = 2 * d + 1
            if min(P.shape[2:]) < need:
                raise InvalidSceneError(
                    f"{self.name} needs patches (and a scene) of at least {need} x {need} "
                    f"pixels (its receptive field); got {P.shape[2]} x {P.shape[3]} — unmix a "
                    "larger scene or use a per-pixel model (e.g. -m fcls)")
            P, dropped = unique_crops(P)
            size = [int(P.shape[2]), int(P.shape[3])]
            if self.config.train_padding == "reflect" and d:
                P = np.pad(P, ((0, 0), (0, 0), (d, d), (d, d)), mode="symmetric")
        super().fit(P, M0)
        self.fit_info.update(patch_size=size, duplicate_crops_dropped=dropped,
                             train_padding=self.config.train_padding)

    def _loss(self, net: SSANUNet, xb: torch.Tensor
              ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """``MSE + λ Σ |1 − Σ_r a_r| + γ ‖A‖_*`` over the valid loss-region pixels."""
        cfg = self.config
        x, mask = self.split(xb)
        a = net.encode(x)
        xc = self.crop(x, self.halo)
        m = mask[:, None]
        count = mask.sum().clamp(min=1.0)
        rec = (torch.square(net.decode(a) - xc) * m).sum() / (count * x.shape[1])
        asc = ((1.0 - a.sum(dim=1)).abs() * mask).sum()
        loss = rec + cfg.sum_weight * asc
        parts = {"reconstruction": rec.detach(), "sum_to_one": asc.detach()}
        if cfg.nuclear_weight > 0:
            nuc = nuclear_norm(a, mask)
            loss = loss + cfg.nuclear_weight * nuc
            parts["nuclear"] = nuc.detach()
        return loss, parts

    def _fit_stages(self, net: SSANUNet, X: torch.Tensor, M0: np.ndarray) -> None:
        cfg = self.config
        net.init_endmembers(torch.from_numpy(np.asarray(M0, np.float32)))
        self.fit_info["endmember_init"] = "m0"
        enc = [p for mod in (net.spatial, net.spectral) if mod is not None
               for p in mod.parameters()] + [net.w_e]
        dec = [p for mod in (net.linear, net.nonlinear) if mod is not None
               for p in mod.parameters()] + [net.w_d]
        groups = [{"params": enc, "lr": cfg.lr_encoder, "name": "encoder"},
                  {"params": dec, "lr": cfg.lr_decoder, "name": "decoder"}]
        self.run_stage("train", net, X, lambda xb: self._loss(net, xb), groups,
                       self.train_settings(cfg.epochs, cfg.batch_size, seed_offset=3,
                                           main=True),
                       optimizer="adam", weight_decay=cfg.weight_decay,
                       after_step=net.clamp_fusion if cfg.clamp_fusion else None,
                       schedule=True)
        self.fit_info["fusion_weights"] = {
            "encoder": [round(float(v), 5) for v in net.w_e.detach().cpu()],
            "decoder": [round(float(v), 5) for v in net.w_d.detach().cpu()]}
        self.match_to_start(net, M0)
        net.eval()
        self._pixel_readout = self.pixel_endmembers(net, X)

    # ---- inference -------------------------------------------------------------------------
    def abundances_image(self, block: np.ndarray, valid: np.ndarray | None = None
                         ) -> tuple[np.ndarray, np.ndarray]:
        """Fused block predict: finite ``block (L, h + 2 halo, w + 2 halo)`` in scene units ->
        abundances ``(k, h, w)`` and reconstruction RMSE ``(h, w)`` (scene units), on the
        device, BatchNorm folded into the convolutions (:meth:`SSANUNet.infer`), in row slabs
        of at most ``infer_batch`` pixels (0: :data:`INFER_PIXELS_CPU` / ``_CUDA``)."""
        net = self._require_network()
        block = self.checked_block(block)
        d = self.halo
        h, w = block.shape[1] - 2 * d, block.shape[2] - 2 * d
        dev = self.torch_device
        budget = self.config.infer_batch or (INFER_PIXELS_CPU if dev.type == "cpu"
                                             else INFER_PIXELS_CUDA)
        rows = max(1, min(h, budget // (w + 2 * d) - 2 * d))  # output rows per model call
        A = np.empty((self.k, h, w), np.float32)
        rmse = np.empty((h, w), np.float32)
        scope = getattr(self, "precision_scope", contextlib.nullcontext)  # newer engines
        with torch.inference_mode(), torch_threads(1 if dev.type == "cpu" else 0), scope():
            const = net.folded()
            for r0 in range(0, h, rows):  # row slabs with their own halo: same result
                r1 = min(h, r0 + rows)
                x = self._host_to_device(block[:, r0:r1 + 2 * d]) * (1.0 / self.scale)
                a, rec = net.infer(x, const)
                xc = x[:, d:d + r1 - r0, d:d + w].reshape(x.shape[0], -1)
                err = torch.sqrt(rec.sub_(xc).square_().mean(dim=0)) * self.scale
                A[:, r0:r1] = a.reshape(-1, r1 - r0, w).float().cpu().numpy()
                rmse[r0:r1] = err.reshape(r1 - r0, w).float().cpu().numpy()
                del x, a, rec, xc, err
        return A, rmse

    def _host_to_device(self, arr: np.ndarray) -> torch.Tensor:
        """float32 tensor of ``arr`` on the device (the base's pinned-memory copy when the
        engine has one)."""
        to_device = getattr(super(), "to_device", None)
        if to_device is not None:
            return to_device(arr)
        return torch.from_numpy(np.ascontiguousarray(arr, dtype=np.float32)).to(
            self.torch_device)

    # ---- endmember read-out ------------------------------------------------------------------
    def pixel_endmembers(self, net: SSANUNet, X: torch.Tensor) -> np.ndarray:
        """``(k, L)`` scaled units: per endmember the mean training spectrum over valid
        loss-region pixels with â > ``readout_threshold``, else over the top
        ``max(1, ⌈readout_fallback · N⌉)`` pixels by â (ties in pixel order). Records the
        counts, the fallbacks and channels that are 0 everywhere."""
        cfg = self.config
        A_parts, X_parts = [], []
        with torch.no_grad():
            for i in range(X.shape[0]):  # one crop at a time bounds the activations
                x, mask = self.split(X[i:i + 1])
                keep = mask.reshape(-1) > 0
                a = net.encode(x)[0].reshape(self.k, -1)[:, keep]
                xc = self.crop(x, self.halo)[0].reshape(x.shape[1], -1)[:, keep]
                A_parts.append(a)
                X_parts.append(xc)
        A = torch.cat(A_parts, dim=1)  # (k, N)
        Xv = torch.cat(X_parts, dim=1)  # (L, N)
        n = A.shape[1]
        top = max(1, math.ceil(cfg.readout_fallback * n))
        out = torch.empty(self.k, Xv.shape[0], dtype=torch.float64)
        counts, fallback = [], []
        for r in range(self.k):  # k spectra, each a masked mean over N pixels
            sel = A[r] > cfg.readout_threshold
            c = int(sel.sum())
            if c == 0:  # stable: ties (e.g. a channel that is 0 everywhere) by pixel order
                sel = torch.argsort(A[r], descending=True, stable=True)[:top]
                fallback.append(r)
            out[r] = Xv[:, sel].double().mean(dim=1).cpu()
            counts.append(c)
        self.fit_info["readout"] = {"method": cfg.readout, "threshold": cfg.readout_threshold,
                                    "pixels_above": counts, "fallback_top_pixels": top,
                                    "fallback_endmembers": fallback,
                                    "zero_endmembers": [r for r in range(self.k)
                                                        if not bool((A[r] > 0).any())]}
        return out.numpy()

    def _read_endmembers(self) -> np.ndarray:
        from hsu_geo.unmix.metrics import sad

        decoder = super()._read_endmembers()
        pixels = np.asarray(self._pixel_readout * self.scale, np.float32)
        del self._pixel_readout
        self.fit_info["readout"]["sad_pixels_vs_decoder_rad"] = [
            round(float(v), 5) for v in sad(pixels, decoder)]
        return pixels if self.config.readout == "pixels" else decoder
