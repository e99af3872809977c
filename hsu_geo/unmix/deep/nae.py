"""NAE (M. Wang, M. Zhao, J. Chen, S. Rahardja, "Nonlinear unmixing of hyperspectral data via
deep autoencoder networks", IEEE GRSL 16(9):1467-1471, 2019, doi 10.1109/LGRS.2019.2900733, as
cited in the seed papers): nonlinear deep autoencoder, baselines.md §D3.

Encoder B → 128 → 64 → 16 → k (LeakyReLU 0.1), abundances ``|z| / Σ|z|``; decoder = linear
part (k → B, no bias, VCA-initialised, its weights are the endmembers) followed by the
nonlinear part Φ = Linear(B → B) → Sigmoid → Linear(B → B), pretrained to reproduce observed
pixels; joint MSE training with a small decoder learning rate.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from hsu_geo.errors import ConfigError
from hsu_geo.unmix.deep.base import DeepConfig, DeepUnmixer, check_choice
from hsu_geo.unmix.deep.layers import ABUNDANCE_ACTIVATIONS, abundance_activation
from hsu_geo.unmix.deep.losses import mse_mean


@dataclass(frozen=True)
class NAEConfig(DeepConfig):
    """NAE settings: [R] paper, [C] model-zoo code, [I] project choice.

    ``epochs`` 50 / ``batch_size`` 512 / ``lr_encoder`` 1e-4 [R] (code: 80 / 2048 / 2e-3),
    ``lr_decoder`` 1e-5 [R/C], ``weight_decay`` 1e-5 [C] (not on the endmember matrix unless
    ``decay_endmembers``); ``min_steps`` 1000 [I] (at least that many steps in the joint
    stage; 50 epochs of 512 pixels are only 400 steps on a 64×64 scene; 0 = the paper's
    epochs); ``hidden`` encoder widths [R];
    ``nonlinear_hidden`` width of Φ (0 = B bands) [C]; decoder pretraining: ``pretrain_steps``
    2000 full-batch Adam steps at ``pretrain_lr`` 1e-3 [C] on ``pretrain_pixels`` observed pixels
    [I], stopping at MSE ``pretrain_tol`` [I] or after ``pretrain_patience`` steps without
    progress [I, 0 = off].
    """

    seed: int = 0
    epochs: int = 50
    min_steps: int = 1000
    batch_size: int = 512
    lr_encoder: float = 1e-4
    lr_decoder: float = 1e-5
    weight_decay: float = 1e-5
    hidden: tuple[int, ...] = (128, 64, 16)
    nonlinear_hidden: int = 0
    abundance: str = "absnorm"
    pretrain_steps: int = 2000
    pretrain_lr: float = 1e-3
    pretrain_pixels: int = 1024
    pretrain_patience: int = 100
    pretrain_tol: float = 1e-6

    def __post_init__(self) -> None:
        super().__post_init__()
        check_choice("abundance", self.abundance, ABUNDANCE_ACTIVATIONS)
        if not self.hidden or min(self.hidden) < 1:
            raise ConfigError(f"setting hidden={self.hidden}: give positive widths, e.g. "
                              "128,64,16")
        if self.nonlinear_hidden < 0 or self.pretrain_pixels < 1 or self.pretrain_steps < 0 \
                or self.pretrain_patience < 0:
            raise ConfigError("nonlinear_hidden, pretrain_steps and pretrain_patience must be "
                              ">= 0 and pretrain_pixels >= 1")


class NAENet(nn.Module):
    """``x (b, L)`` → ``a (b, k)`` → ``x̂ = Φ(W a) (b, L)``."""

    def __init__(self, n_bands: int, k: int, cfg: NAEConfig) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        width = n_bands
        for h in cfg.hidden:
            layers += [nn.Linear(width, h), nn.LeakyReLU(0.1)]
            width = h
        layers.append(nn.Linear(width, k))
        self.encoder = nn.Sequential(*layers)
        self.linear = nn.Linear(k, n_bands, bias=False)
        hid = cfg.nonlinear_hidden or n_bands
        self.nonlinear = nn.Sequential(nn.Linear(n_bands, hid), nn.Sigmoid(),
                                       nn.Linear(hid, n_bands))
        self.abundance_kind = cfg.abundance

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        return abundance_activation(self.encoder(x), self.abundance_kind)

    def restore(self, s: torch.Tensor) -> torch.Tensor:
        return self.nonlinear(s)

    def decode(self, a: torch.Tensor) -> torch.Tensor:
        return self.restore(self.linear(a))

    def endmember_weight(self) -> torch.Tensor:
        return self.linear.weight


class NAEUnmixer(DeepUnmixer):
    name = "nae"
    description = "NAE: nonlinear deep autoencoder with VCA-initialised decoder (baseline)"
    doi = "10.1109/LGRS.2019.2900733"
    input = "pixels"
    Config = NAEConfig

    def build_network(self, n_bands: int, k: int) -> nn.Module:
        return NAENet(n_bands, k, self.config)

    def param_groups(self, net: NAENet) -> list[dict[str, Any]]:
        cfg = self.config
        return [
            {"params": list(net.encoder.parameters()), "lr": cfg.lr_encoder, "name": "encoder"},
            *self.decoder_groups(list(net.linear.parameters()),
                                 list(net.nonlinear.parameters()), cfg.lr_decoder),
        ]

    def _fit_stages(self, net: NAENet, X: torch.Tensor, M0: np.ndarray) -> None:
        cfg = self.config
        with torch.no_grad():
            net.linear.weight.copy_(torch.from_numpy(M0.T.astype(np.float32)))
        self.fit_info["endmember_init"] = "linear decoder <- M0 (VCA/library from the pipeline)"
        self.pretrain_nonlinear(net, X)
        self.run_stage("train", net, X,
                       lambda xb: (mse_mean(net.decode(net.encode(xb)), xb), {}),
                       self.param_groups(net),
                       self.train_settings(cfg.epochs, cfg.batch_size, seed_offset=3,
                                           main=True),
                       weight_decay=cfg.weight_decay, schedule=True)
