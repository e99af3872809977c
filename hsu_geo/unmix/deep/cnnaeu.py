"""CNNAEU — convolutional autoencoder (Palsson, Ulfarsson, Sveinsson, IEEE TGRS 59(1):535–549,
2021), the spatial deep baseline of baselines.md §D2.

Encoder: Conv 3×3 (B → 48, no bias) → LeakyReLU 0.02 → BatchNorm → SpatialDropout 0.2 →
Conv 1×1 (48 → R, no bias) → LeakyReLU 0.02 → BatchNorm → SpatialDropout 0.2 →
softmax(3·x) over channels. Decoder: Conv 13×13 (R → B), linear, no bias, non-negative; its
kernel summed over the 13×13 positions is the endmember matrix (the spec's mean times 169, so
the spectra are in scene units: a homogeneous area of abundances a reconstructs as M a; SAD
is the same). Loss: spectral angle. Training: random 40×40 patches, batch 15, RMSprop lr 3e-3,
weights N(0, 0.3) [C: model-zoo Keras code].

Project choices [I]: unpadded convolutions with the loss on each patch's valid interior and
the scene edge reflected at inference (:mod:`hsu_geo.unmix.deep.patch`), so the halo is
1 + 6 = 7 pixels and results do not depend on chunking; ``epochs`` defaults to 40 instead of
the code's 320 so a CPU fit takes minutes (``--set epochs=320`` restores it); the learned
endmembers are matched to the pipeline's ``M0`` (Hungarian on SAD) so names stay with the
closest spectra; ``decoder_init=m0`` starts the decoder from ``M0`` instead of N(0, 0.3);
after training the decoder is rescaled by one least-squares factor (the angle loss leaves its
scale free), so endmembers and the reconstruction RMSE are in scene units.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from hsu_geo.errors import ConfigError
from hsu_geo.unmix.deep.base import DeepConfig, check_choice
from hsu_geo.unmix.deep.patch import PatchDeepUnmixer, init_normal, masked_spectral_angle


@dataclass(frozen=True)
class CNNAEUConfig(DeepConfig):
    """CNNAEU settings: ``n_patches`` random ``patch_size``² windows with at least
    ``min_valid`` valid pixels [I], batch 15 patches, RMSprop lr 3e-3 (encoder and decoder),
    ``features`` 48, kernels 3 (encoder) and 13 (decoder), ``dropout`` 0.2, softmax
    ``temperature`` 3, ``init_std`` 0.3 [C]; ``epochs`` 40 [I] (code: 320);
    ``decoder_init`` ``normal`` [C] or ``m0`` [I]."""

    seed: int = 0
    epochs: int = 40
    batch_size: int = 15
    lr_encoder: float = 3e-3
    lr_decoder: float = 3e-3
    weight_decay: float = 0.0
    optimizer: str = "rmsprop"
    n_patches: int = 250
    patch_size: int = 40
    min_valid: float = 0.9
    features: int = 48
    encoder_kernel: int = 3
    decoder_kernel: int = 13
    dropout: float = 0.2
    temperature: float = 3.0
    init_std: float = 0.3
    decoder_init: str = "normal"

    def __post_init__(self) -> None:
        super().__post_init__()
        check_choice("optimizer", self.optimizer, ("rmsprop", "adam"))
        check_choice("decoder_init", self.decoder_init, ("normal", "m0"))
        for key in ("encoder_kernel", "decoder_kernel"):
            v = getattr(self, key)
            if v < 1 or v % 2 == 0:
                raise ConfigError(f"setting {key}={v} must be an odd number >= 1")
        checks = {"n_patches": self.n_patches >= 1, "patch_size": self.patch_size >= 1,
                  "min_valid": 0.0 < self.min_valid <= 1.0, "features": self.features >= 1,
                  "dropout": 0.0 <= self.dropout < 1.0, "temperature": self.temperature > 0,
                  "init_std": self.init_std > 0}
        for key, ok in checks.items():
            if not ok:
                raise ConfigError(f"setting {key}={getattr(self, key)!r} is out of range")


class CNNAEUNet(nn.Module):
    """``x (b, L, H, W)`` → ``a (b, k, H − 2e, W − 2e)`` → ``x̂ (b, L, H − 2e − 2r, W − 2e − 2r)``
    with unpadded convolutions (``e``, ``r``: encoder and decoder kernel radii)."""

    def __init__(self, n_bands: int, k: int, cfg: CNNAEUConfig) -> None:
        super().__init__()
        f = cfg.features
        self.encoder = nn.Sequential(
            nn.Conv2d(n_bands, f, cfg.encoder_kernel, bias=False), nn.LeakyReLU(0.02),
            nn.BatchNorm2d(f, eps=1e-3, momentum=0.01), nn.Dropout2d(cfg.dropout),
            nn.Conv2d(f, k, 1, bias=False), nn.LeakyReLU(0.02),
            nn.BatchNorm2d(k, eps=1e-3, momentum=0.01), nn.Dropout2d(cfg.dropout))
        self.decoder = nn.Conv2d(k, n_bands, cfg.decoder_kernel, bias=False)
        self.temperature = cfg.temperature
        init_normal(self, cfg.init_std)
        with torch.no_grad():
            self.decoder.weight.clamp_(min=0.0)
        self.register_buffer("perm", torch.arange(k))

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        a = torch.softmax(self.temperature * self.encoder(x), dim=1)
        return a[:, self.perm]

    def decode(self, a: torch.Tensor) -> torch.Tensor:
        return self.decoder(a[:, torch.argsort(self.perm)])

    def endmember_weight(self) -> torch.Tensor:
        """``(L, k)``: the decoder kernel summed over its spatial positions."""
        return self.decoder.weight.sum(dim=(2, 3))[:, self.perm]


class CNNAEUUnmixer(PatchDeepUnmixer):
    name = "cnnaeu"
    description = ("CNNAEU: convolutional autoencoder on patches, 13x13 linear conv decoder, "
                   "SAD loss (spatial baseline)")
    doi = "10.1109/TGRS.2020.2992743"
    input = "patches"
    halo = 7  # default kernels: 1 (3x3 encoder) + 6 (13x13 decoder); set per config
    Config = CNNAEUConfig

    def radii(self) -> tuple[int, int]:
        return self.config.encoder_kernel // 2, self.config.decoder_kernel // 2

    def build_network(self, n_bands: int, k: int) -> nn.Module:
        return CNNAEUNet(n_bands, k, self.config)

    def rescale_decoder(self, net: CNNAEUNet, X: torch.Tensor, batch: int = 16) -> float:
        """Multiply the decoder by the least-squares factor ``c = Σ x̂·x / Σ x̂·x̂`` over the
        valid training interiors: the spectral-angle loss leaves the decoder's scale free, and
        this puts endmembers and reconstructions in scene units (abundances and SAD are
        unchanged). Returns ``c``."""
        num = torch.zeros((), dtype=torch.float64, device=X.device)
        den = torch.zeros((), dtype=torch.float64, device=X.device)
        net.eval()
        with torch.no_grad():
            for start in range(0, X.shape[0], batch):
                x, mask = self.split(X[start:start + batch])
                xh = net.decode(net.encode(x))
                xc = self.crop(x, self.halo)
                num += ((xh * xc).sum(dim=1) * mask).sum().double()
                den += ((xh * xh).sum(dim=1) * mask).sum().double()
            c = float(num / den) if float(den) > 0 else 1.0
            if c > 0:
                net.decoder.weight.mul_(c)
        return round(c, 6)

    def _fit_stages(self, net: CNNAEUNet, X: torch.Tensor, M0: np.ndarray) -> None:
        cfg = self.config
        if cfg.decoder_init == "m0":
            size = cfg.decoder_kernel ** 2
            with torch.no_grad():
                net.decoder.weight.copy_(torch.from_numpy(
                    (M0.T / size).astype(np.float32))[:, :, None, None].expand_as(
                        net.decoder.weight))
        self.fit_info["endmember_init"] = cfg.decoder_init

        def nonneg() -> None:
            with torch.no_grad():
                net.decoder.weight.clamp_(min=0.0)

        def loss(xb: torch.Tensor) -> tuple[torch.Tensor, dict[str, Any]]:
            x, mask = self.split(xb)
            return masked_spectral_angle(net.decode(net.encode(x)), self.crop(x, self.halo),
                                         mask), {}

        groups = [{"params": list(net.encoder.parameters()), "lr": cfg.lr_encoder,
                   "name": "encoder"},
                  {"params": list(net.decoder.parameters()), "lr": cfg.lr_decoder,
                   "name": "decoder"}]
        self.run_stage("train", net, X, loss, groups,
                       self.train_settings(cfg.epochs, cfg.batch_size, seed_offset=3,
                                           main=True),
                       optimizer=cfg.optimizer, weight_decay=cfg.weight_decay,
                       after_step=nonneg, schedule=True)
        self.fit_info["decoder_rescale"] = self.rescale_decoder(net, X)
        self.match_to_start(net, M0)
