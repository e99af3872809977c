"""ACR-Net — Adaptive Correlation Refined Network (Hu, Wu, Liu, Zhang, IEEE TGRS 63:5517315,
2025), spec ``shared/models/acr_net.md`` (architecture and training read from the authors'
released PyTorch code [C]).

Encoder ("base" variant): conv units (Conv, no bias → LeakyReLU 0.02 → BatchNorm) 1×1 and 3×3
(B → C1 = 16R each, concatenated) → 1×1 (2·C1 → C1) → CASA(C1) → 1×1 (C1 → C2 = 8R) →
CASA(C2) = feature map F → 1×1 (C2 → R) → channel softmax = abundances A. CASA is CBAM-style
spatial attention per endmember group of channels: each of R groups is multiplied by
sigmoid(Conv7×7([channel mean; channel max])) of its own channels. "four_layer" /
"six_layer" insert one / two [3×3 conv unit → CASA] pairs after each CASA.

ACAD decoder: q, k = 1×1 convs of F (C2 → C2); for each pixel p and each of the K = 5×5
offsets δ_j, att_{p,j} = softmax_j(q_p·k_{p+δ_j} / √C2); x̂_p = ReLU(Σ_j att_{p,j} W_jᵀ
a_{p+δ_j}) with a learnable W (K, R, B). Endmembers = mean over the K positions of
clamp_min(W, 0). Loss: SAD + w_ab(e)·mean √a (w_ab cosine-decayed from 0.5 to 0 over the
epochs) + ½ Σ (W_{·,·,b} − W_{·,·,b+1})² / K. Training: 800 random 13×13 patches, batch 32
(drop_last), two RMSprop optimisers (alpha 0.99, weight decay 1e-3) stepped together, 200
epochs; Kaiming-normal convs, W Kaiming-normal (fan_out) with its centre slot set to the
initial endmembers (VCA here [I]).

**Decoder memory** [I]: the released code materialises a (b, N, K, R, B) tensor (≈ 6 GB on
Urban). Here ``W_jᵀ a_{p+δ_j}`` is never formed per position: with G_{p,(j,r)} = att_{p,j}
a_{p+δ_j,r}, x̂_p = ReLU(Σ_{j,r} G_{p,(j,r)} W_{j,r,:}) — one (N, K·R) × (K·R, B) product
(a 1×1 convolution), computed in output row tiles of at most :data:`DECODER_TILE_PIXELS`
pixels. Numerically the same sum (tested against the unfold form). Decoder working memory:
``4 · (2·C2·n + T · (2K + 2K·R) + m · B)`` bytes for a call on ``n`` input and ``m`` output
pixels with tiles of ``T = min(m, 65,536)`` — about ``4 · (2·C2 + 2K + 2K·R + B)`` bytes per
pixel (R = 3, B = 300: 2.2 KB) against ``4 · K·R·B`` for the released tensor (90 KB). The
engine calls the model on row tiles of at most 65,536 pixels of one block, so the decoder's
memory is set by ``--chunk-size`` (≤ 0.14 GiB per call at R = 3, B = 300), not by the scene.

Project choices [I] (config options, spec defaults where the spec has one):
unpadded ("valid") convolutions at inference, so the halo is exact and finite — encoder
1 (3×3) + 3 + 3 (two 7×7 CASA convs) = 7 pixels (four_layer 15, six_layer 23), decoder
2 (5×5 window), halo 9 — and the engine supplies true neighbours (reflected pixels at the
scene edge, where the code zero-pads); the attention of both CASA and ACAD is already local
(7×7 and 5×5 windows), so no windowed approximation is needed. ``train_padding="zero"``
trains like the code — zero padding inside each 13×13 patch and the loss on every patch pixel
— and the same weights then run unpadded on image blocks (identical away from the edges of
what the network sees); ``"valid"`` trains unpadded with the loss on the ``p - 2·halo``
interior (needs ``patch_size`` ≥ 2·halo + 1, e.g. 31). ``lr_decoder`` defaults to the code's
Urban4/PaviaU value 1e-3 (its per-dataset values: Samson 1.5e-4, Muffle 5e-4, synthetic 1e-5).
After training the decoder is multiplied by one least-squares factor (the angle loss leaves its
scale free) so endmembers and the reconstruction RMSE are in scene units; the endmembers are
matched to the pipeline's ``M0`` (Hungarian on SAD) so names follow the closest start spectra.
The "six_layer" quirk of the code (a discarded CASA output) is not reproduced.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.nn import functional

from hsu_geo.errors import ConfigError, InvalidSceneError
from hsu_geo.unmix.deep._training import torch_threads, train
from hsu_geo.unmix.deep.base import DeepConfig, check_choice
from hsu_geo.unmix.deep.patch import PatchDeepUnmixer

#: most output pixels per decoder call (the row tile of :meth:`ACRNet.decode`)
DECODER_TILE_PIXELS = 65536
#: inserted [3×3 conv unit → CASA] pairs per width of each encoder variant
ENCODER_PAIRS = {"base": 0, "four_layer": 1, "six_layer": 2}


@dataclass(frozen=True)
class ACRNetConfig(DeepConfig):
    """ACR-Net settings ([C] = released code, [I] = project choice; spec acr_net.md).

    Patches: ``n_patches`` 800 random ``patch_size`` 13² windows [C] with at least
    ``min_valid`` valid pixels [I]; ``batch_size`` 32, ``drop_last`` [C]; ``epochs`` 200 [C].
    Network: ``encoder`` base | four_layer | six_layer [C], widths ``c1_per_endmember`` 16
    and ``c2_per_endmember`` 8 (× R) [C], ``casa_kernel`` 7, ``decoder_kernel`` 5,
    ``leaky_slope`` 0.02, ``softmax_scale`` 1 [C]. Loss: ``w_sad`` 1, ``w_half`` 0.5 with
    ``half_schedule`` cosine (or constant), ``w_smooth`` 1 [C]; ``sad_clamp`` 1e-7 and
    ``sqrt_eps`` 1e-12 [I]. Optimiser: RMSprop ``rmsprop_alpha`` 0.99, ``rmsprop_eps`` 1e-8,
    ``weight_decay`` 1e-3 on every parameter (``decay_endmembers`` on) [C], ``lr_encoder``
    1e-3 [C], ``lr_decoder`` 1e-3 [C: Urban4/PaviaU]. ``decoder_init`` m0 (centre slot = the
    initial endmembers [C/I]) or kaiming (none). ``train_padding`` zero [C] or valid [I];
    ``rescale_decoder`` [I] (module docstring).
    """

    seed: int = 0
    epochs: int = 200
    batch_size: int = 32
    drop_last: bool = True
    lr_encoder: float = 1e-3
    lr_decoder: float = 1e-3
    weight_decay: float = 1e-3
    decay_endmembers: bool = True
    rmsprop_alpha: float = 0.99
    rmsprop_eps: float = 1e-8
    n_patches: int = 800
    patch_size: int = 13
    min_valid: float = 0.9
    encoder: str = "base"
    c1_per_endmember: int = 16
    c2_per_endmember: int = 8
    casa_kernel: int = 7
    decoder_kernel: int = 5
    leaky_slope: float = 0.02
    softmax_scale: float = 1.0
    w_sad: float = 1.0
    w_half: float = 0.5
    half_schedule: str = "cosine"
    w_smooth: float = 1.0
    sad_clamp: float = 1e-7
    sqrt_eps: float = 1e-12
    decoder_init: str = "m0"
    train_padding: str = "zero"
    rescale_decoder: bool = True

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.lr_schedule != "none":
            raise ConfigError(f"setting lr_schedule={self.lr_schedule!r}: acr_net trains at "
                              "constant learning rates, as the authors' code does")
        check_choice("encoder", self.encoder, tuple(ENCODER_PAIRS))
        check_choice("half_schedule", self.half_schedule, ("cosine", "constant"))
        check_choice("decoder_init", self.decoder_init, ("m0", "kaiming"))
        check_choice("train_padding", self.train_padding, ("zero", "valid"))
        for key in ("casa_kernel", "decoder_kernel"):
            v = getattr(self, key)
            if v < 1 or v % 2 == 0:
                raise ConfigError(f"setting {key}={v} must be an odd number >= 1")
        checks = {"n_patches": self.n_patches >= 1, "patch_size": self.patch_size >= 1,
                  "min_valid": 0.0 < self.min_valid <= 1.0,
                  "c1_per_endmember": self.c1_per_endmember >= 1,
                  "c2_per_endmember": self.c2_per_endmember >= 1,
                  "softmax_scale": self.softmax_scale > 0, "w_sad": self.w_sad >= 0,
                  "w_half": self.w_half >= 0, "w_smooth": self.w_smooth >= 0,
                  "sad_clamp": 0 <= self.sad_clamp < 0.5, "sqrt_eps": self.sqrt_eps >= 0,
                  "rmsprop_alpha": 0 < self.rmsprop_alpha < 1, "rmsprop_eps": self.rmsprop_eps > 0}
        for key, ok in checks.items():
            if not ok:
                raise ConfigError(f"setting {key}={getattr(self, key)!r} is out of range")


def _crop(x: torch.Tensor, r: int) -> torch.Tensor:
    """``x (b, c, H, W)`` without ``r`` pixels on each side."""
    return x[:, :, r:x.shape[2] - r, r:x.shape[3] - r] if r else x


class ConvUnit(nn.Module):
    """Conv k×k (no bias) → LeakyReLU → BatchNorm2d [C]; unpadded unless ``pad``."""

    def __init__(self, cin: int, cout: int, kernel: int, slope: float) -> None:
        super().__init__()
        self.radius = kernel // 2
        self.conv = nn.Conv2d(cin, cout, kernel, bias=False)
        self.act = nn.LeakyReLU(slope)
        self.bn = nn.BatchNorm2d(cout)

    def forward(self, x: torch.Tensor, pad: bool = False) -> torch.Tensor:
        r = self.radius
        if pad and r:
            x = functional.pad(x, (r, r, r, r))
        return self.bn(self.act(self.conv(x)))


class CASA(nn.Module):
    """Per-endmember spatial attention: ``x (b, C, H, W)`` split into ``heads`` channel groups,
    each multiplied by sigmoid(Conv k×k([mean; max] of its channels)) — one 2 → 1 conv per
    head, run as one grouped conv. Unpadded: output ``(b, C, H − 2r, W − 2r)``."""

    def __init__(self, channels: int, heads: int, kernel: int) -> None:
        super().__init__()
        if channels % heads:
            raise ConfigError(f"CASA: {channels} channels do not split into {heads} heads")
        self.heads, self.radius = heads, kernel // 2
        self.conv = nn.Conv2d(2 * heads, heads, kernel, groups=heads, bias=False)

    def forward(self, x: torch.Tensor, pad: bool = False) -> torch.Tensor:
        b, c, h, w = x.shape
        g = x.reshape(b, self.heads, c // self.heads, h, w)
        d = torch.stack((g.mean(dim=2), g.amax(dim=2)), dim=2).reshape(b, 2 * self.heads, h, w)
        r = self.radius
        if pad and r:
            d = functional.pad(d, (r, r, r, r))
        else:
            g = g[..., r:h - r, r:w - r] if r else g
        s = torch.sigmoid(self.conv(d))  # (b, heads, h', w')
        return (g * s[:, :, None]).reshape(b, c, s.shape[2], s.shape[3])


class ACRNet(nn.Module):
    """``x (b, B, H, W)`` → (``a (b, R, H − 2e, W − 2e)``, ``F (b, C2, H − 2e, W − 2e)``) →
    ``x̂ (b, B, H − 2e − 2r, W − 2e − 2r)`` with unpadded operations; with ``padded = True``
    (training like the code) every operation zero-pads and sizes are kept."""

    def __init__(self, n_bands: int, k: int, cfg: ACRNetConfig) -> None:
        super().__init__()
        c1, c2 = cfg.c1_per_endmember * k, cfg.c2_per_endmember * k
        s, ck = cfg.leaky_slope, cfg.casa_kernel
        pairs = ENCODER_PAIRS[cfg.encoder]
        self.unit1a = ConvUnit(n_bands, c1, 1, s)
        self.unit1b = ConvUnit(n_bands, c1, 3, s)
        self.unit3 = ConvUnit(2 * c1, c1, 1, s)
        self.stage1 = nn.ModuleList([CASA(c1, k, ck)])
        for _ in range(pairs):
            self.stage1.extend([ConvUnit(c1, c1, 3, s), CASA(c1, k, ck)])
        self.unit5 = ConvUnit(c1, c2, 1, s)
        self.stage2 = nn.ModuleList([CASA(c2, k, ck)])
        for _ in range(pairs):
            self.stage2.extend([ConvUnit(c2, c2, 3, s), CASA(c2, k, ck)])
        self.unit7 = ConvUnit(c2, k, 1, s)
        self.query = nn.Conv2d(c2, c2, 1, bias=False)
        self.key = nn.Conv2d(c2, c2, 1, bias=False)
        self.kernel = cfg.decoder_kernel
        kk = self.kernel ** 2
        self.W = nn.Parameter(torch.empty(kk, k, n_bands))
        self.tau = c2 ** -0.5
        self.softmax_scale = cfg.softmax_scale
        self.encoder_radius = 1 + (2 * pairs + 2) * (ck // 2) + 2 * pairs * 1
        self.decoder_radius = self.kernel // 2
        self.padded = False
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight)  # fan_in, gain √2 [C]
        nn.init.kaiming_normal_(self.W, mode="fan_out")  # std √2 / √(K·B) [C]
        self.register_buffer("perm", torch.arange(k))

    def encoder_parameters(self) -> list[nn.Parameter]:
        skip = {id(p) for p in self.decoder_parameters()}
        return [p for p in self.parameters() if id(p) not in skip]

    def decoder_parameters(self) -> list[nn.Parameter]:
        return [*self.query.parameters(), *self.key.parameters(), self.W]

    # ---- encoder ---------------------------------------------------------------------------
    def features(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Abundances ``(b, R, h, w)`` (network order; channel softmax) and the feature map
        ``F (b, C2, h, w)`` of ``x (b, B, H, W)``."""
        pad = self.padded
        u = self.unit1b(x, pad)
        v = self.unit1a(x) if pad else _crop(self.unit1a(x), 1)  # (no copy of x's crop)
        z = self.unit3(torch.cat((v, u), dim=1))
        for m in self.stage1:
            z = m(z, pad)
        z = self.unit5(z)
        for m in self.stage2:
            z = m(z, pad)
        a = torch.softmax(self.softmax_scale * self.unit7(z), dim=1)
        return a, z

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """Abundances ``(b, R, h, w)`` in the output (matched) order."""
        return self.features(x)[0][:, self.perm]

    # ---- ACAD decoder ----------------------------------------------------------------------
    def decode(self, a: torch.Tensor, f: torch.Tensor,
               tile_pixels: int = DECODER_TILE_PIXELS) -> torch.Tensor:
        """``x̂ (b, B, h − 2r, w − 2r)`` (``h, w`` kept when ``padded``) from abundances
        ``a (b, R, h, w)`` in output order and features ``f (b, C2, h, w)``, in output row
        tiles of at most ``tile_pixels`` pixels per image (module docstring)."""
        a = a[:, torch.argsort(self.perm)]
        r = self.decoder_radius
        q, kf = self.query(f), self.key(f)
        if self.padded:
            kf = functional.pad(kf, (r, r, r, r))
            a = functional.pad(a, (r, r, r, r))
        else:
            q = _crop(q, r)
        ho, wo = q.shape[2], q.shape[3]
        rows = max(1, min(ho, tile_pixels // max(wo, 1)))
        tiles = [self._decode_rows(q[:, :, y:y + rows], kf[:, :, y:y + rows + 2 * r],
                                   a[:, :, y:y + rows + 2 * r]) for y in range(0, ho, rows)]
        return tiles[0] if len(tiles) == 1 else torch.cat(tiles, dim=2)

    def _decode_rows(self, q: torch.Tensor, kf: torch.Tensor, a: torch.Tensor
                     ) -> torch.Tensor:
        """One row tile: ``q (b, C2, t, w)``, ``kf (b, C2, t + 2r, w + 2r)``, ``a (b, R,
        t + 2r, w + 2r)`` → ``x̂ (b, B, t, w)``."""
        n = self.kernel
        t, w = q.shape[2], q.shape[3]
        offsets = [(dy, dx) for dy in range(n) for dx in range(n)]
        logits = torch.stack([(q * kf[:, :, dy:dy + t, dx:dx + w]).sum(dim=1)
                              for dy, dx in offsets], dim=1) * self.tau  # (b, K, t, w)
        att = torch.softmax(logits, dim=1)
        g = torch.cat([att[:, j:j + 1] * a[:, :, dy:dy + t, dx:dx + w]
                       for j, (dy, dx) in enumerate(offsets)], dim=1)  # (b, K·R, t, w)
        kk, k, bands = self.W.shape
        weight = self.W.reshape(kk * k, bands).t()[:, :, None, None]  # (B, K·R, 1, 1)
        return torch.relu(functional.conv2d(g, weight))

    def endmember_weight(self) -> torch.Tensor:
        """``(B, R)``: mean over the K positions of clamp_min(W, 0) [C], output order."""
        return self.W.clamp(min=0.0).mean(dim=0).t()[:, self.perm]

    def homogeneous(self, a: torch.Tensor) -> torch.Tensor:
        """Decoded spectra ``(N, B)`` of abundance vectors ``a (N, R)`` (output order) over a
        homogeneous neighbourhood: F is constant there, so the attention is uniform and
        x̂ = ReLU(a · mean_j W_j) exactly."""
        return torch.relu(a[:, torch.argsort(self.perm)] @ self.W.mean(dim=0))


class ACRNetUnmixer(PatchDeepUnmixer):
    name = "acr_net"
    description = ("ACR-Net: CASA attention encoder, ACAD neighbourhood-attention decoder, "
                   "13x13 patch training")
    doi = "10.1109/TGRS.2025.3581078"
    input = "patches"
    halo = 9  # default config: encoder 7 + decoder 2; set per config
    Config = ACRNetConfig

    def radii(self) -> tuple[int, int]:
        cfg = self.config
        pairs = ENCODER_PAIRS[cfg.encoder]
        return (1 + (2 * pairs + 2) * (cfg.casa_kernel // 2) + 2 * pairs,
                cfg.decoder_kernel // 2)

    def build_network(self, n_bands: int, k: int) -> nn.Module:
        return ACRNet(n_bands, k, self.config)

    def hidden_width(self, n_bands: int, k: int) -> int:
        """The concatenated first units (2 · C1 = 32 R) or the decoder's per-pixel attention
        and gathered abundances (2K + 2K·R, K = decoder window²)."""
        cfg = self.config
        window = cfg.decoder_kernel ** 2
        return max(2 * cfg.c1_per_endmember * k, 2 * window + 2 * window * k)

    # ---- fitting ---------------------------------------------------------------------------
    def fit(self, Y: np.ndarray, M0: np.ndarray) -> None:
        """Fit on patches ``Y (n, L, p, p)`` (NaN = nodata) from endmembers ``M0 (k, L)``.
        With ``train_padding="zero"`` the patches may be smaller than the receptive field
        (the code's 13×13), but the scene must still have ``halo + 1`` pixels per side for
        block inference."""
        P = np.asarray(Y)
        if self.config.train_padding == "valid" or P.ndim != 4:
            super().fit(Y, M0)
            return
        need = self.halo + 1
        if min(P.shape[2:]) < need:
            raise InvalidSceneError(
                f"{self.name} needs a scene of at least {need} x {need} pixels (its "
                f"{self.halo}-pixel receptive field); got patches of {P.shape[2]} x "
                f"{P.shape[3]} — unmix a larger scene or use a per-pixel model (e.g. -m fcls)")
        halo = self.halo
        self.halo = 0  # zero-padded training: the loss covers every patch pixel
        try:
            super().fit(P, M0)
        finally:
            self.halo = halo
        self.fit_info["halo"] = halo

    def _fit_stages(self, net: ACRNet, X: torch.Tensor, M0: np.ndarray) -> None:
        cfg = self.config
        if cfg.decoder_init == "m0":
            with torch.no_grad():
                net.W[net.W.shape[0] // 2] = torch.from_numpy(M0.astype(np.float32))
        self.fit_info["endmember_init"] = cfg.decoder_init
        self.fit_info["train_padding"] = cfg.train_padding
        net.padded = cfg.train_padding == "zero"
        settings = self.train_settings(cfg.epochs, cfg.batch_size, seed_offset=3, main=True)
        _, slices, epochs = settings.plan(int(X.shape[0]))
        per_epoch, step = len(slices), [0]
        rd = net.decoder_radius

        def half_weight() -> float:
            if cfg.half_schedule == "constant" or epochs == 0:
                return cfg.w_half
            e = min(step[0] // per_epoch, epochs - 1)
            return cfg.w_half * 0.5 * (1.0 + math.cos(math.pi * e / epochs))

        def loss(xb: torch.Tensor) -> tuple[torch.Tensor, dict[str, Any]]:
            x, mask = self.split(xb)
            a, f = net.features(x)
            xh = net.decode(a[:, net.perm], f)
            sad = _masked_angle(xh, self.crop(x, self.halo), mask, cfg.sad_clamp)
            ac = a if net.padded else _crop(a, rd)
            half = (torch.sqrt(ac + cfg.sqrt_eps).mean(dim=1) * mask).sum() \
                / mask.sum().clamp(min=1.0)
            smooth = 0.5 * torch.square(net.W[:, :, 1:] - net.W[:, :, :-1]).sum() \
                / net.W.shape[0]
            wh = half_weight()
            step[0] += 1
            total = cfg.w_sad * sad + wh * half + cfg.w_smooth * smooth
            return total, {"sad": sad, "half": half, "smooth": smooth}

        wd_em = cfg.weight_decay if cfg.decay_endmembers else 0.0
        groups = [{"params": net.encoder_parameters(), "lr": cfg.lr_encoder, "name": "encoder",
                   "weight_decay": cfg.weight_decay},
                  {"params": [net.query.weight, net.key.weight], "lr": cfg.lr_decoder,
                   "name": "decoder", "weight_decay": cfg.weight_decay},
                  {"params": [net.W], "lr": cfg.lr_decoder, "name": "endmembers",
                   "weight_decay": wd_em}]
        # two RMSprop optimisers stepped together = one over both groups (per-parameter state)
        opt = torch.optim.RMSprop(groups, alpha=cfg.rmsprop_alpha, eps=cfg.rmsprop_eps)
        with self.precision_scope():
            result = train(net, X, loss, opt, settings, stage="train", progress=self.progress)
        record = result.as_dict()
        record["learning_rates"] = {g["name"]: g["lr"] for g in opt.param_groups}
        record["weight_decays"] = {g["name"]: g["weight_decay"] for g in opt.param_groups}
        record["optimizer"] = f"rmsprop(alpha={cfg.rmsprop_alpha}, eps={cfg.rmsprop_eps})"
        record["final_half_weight"] = round(half_weight(), 6)
        self.fit_info["stages"]["train"] = record
        if cfg.rescale_decoder:
            self.fit_info["decoder_rescale"] = self.rescale_decoder(net, X)
        net.padded = False
        self.match_to_start(net, M0)

    def rescale_decoder(self, net: ACRNet, X: torch.Tensor, batch: int = 32) -> float:
        """Multiply W by the least-squares factor ``c = Σ x̂·x / Σ x̂·x̂`` over the training
        loss regions (the angle loss leaves the decoder's scale free; ReLU commutes with
        c > 0), putting endmembers and reconstructions in scene units. Returns ``c``."""
        num = torch.zeros((), dtype=torch.float64, device=X.device)
        den = torch.zeros((), dtype=torch.float64, device=X.device)
        net.eval()
        with torch.no_grad():
            for start in range(0, X.shape[0], batch):
                x, mask = self.split(X[start:start + batch])
                a, f = net.features(x)
                xh = net.decode(a[:, net.perm], f)
                xc = self.crop(x, self.halo)
                num += ((xh * xc).sum(dim=1) * mask).sum().double()
                den += ((xh * xh).sum(dim=1) * mask).sum().double()
            c = float(num / den) if float(den) > 0 else 1.0
            if c > 0:
                net.W.mul_(c)
        return round(c, 6)

    # ---- inference -------------------------------------------------------------------------
    def reconstruct(self, A: np.ndarray) -> np.ndarray:
        """Decoded spectra ``(N, L)`` of abundances ``A (N, k)`` taken as homogeneous (uniform
        attention: ReLU(a · mean_j W_j), scene units)."""
        net = self._require_network()
        scale = self.scale
        return self._batched(A, self.k, lambda a: net.homogeneous(a) * scale, self.n_bands)

    def abundances_image(self, block: np.ndarray, valid: np.ndarray | None = None
                         ) -> tuple[np.ndarray, np.ndarray]:
        """Fused block predict: finite ``block (L, h + 2 halo, w + 2 halo)`` in scene units ->
        abundances ``(k, h, w)`` and reconstruction RMSE ``(h, w)`` (scene units) of the
        interior. The decoder needs the neighbours' abundances and features, so encoder and
        decoder run together here. ``valid`` is unused (the engine fills and masks)."""
        net = self._require_network()
        block = self.checked_block(block)
        d = self.halo
        dev = self.torch_device
        with torch.inference_mode(), torch_threads(1 if dev.type == "cpu" else 0):
            x = torch.from_numpy(np.ascontiguousarray(block, dtype=np.float32)).to(dev)
            x = x[None] * (1.0 / self.scale)
            a, f = net.features(x)  # (1, k, h + 2r, w + 2r), network order
            a = a[:, net.perm]
            rec = net.decode(a, f)  # (1, L, h, w)
            del f
            diff = rec.sub_(self.crop(x, d))  # in place: no second (L, h, w) temporary
            del x
            rmse = torch.sqrt(diff.square_().mean(dim=1))[0] * self.scale
            A = self.crop(a, self.decoder_radius)[0]
            return A.float().cpu().numpy(), rmse.float().cpu().numpy()


def _masked_angle(x_hat: torch.Tensor, x: torch.Tensor, mask: torch.Tensor, clamp: float,
                  eps: float = 1e-8) -> torch.Tensor:
    """Mean spectral angle (rad) over ``mask`` with the cosine clamped to ±(1 − ``clamp``)."""
    cos = (x_hat * x).sum(dim=1) / (x_hat.norm(dim=1) * x.norm(dim=1) + eps)
    angle = torch.acos(cos.clamp(-1.0 + clamp, 1.0 - clamp))
    return (angle * mask).sum() / mask.sum().clamp(min=1.0)
