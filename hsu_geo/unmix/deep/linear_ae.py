"""LinearAE ≈ DAEU (Palsson et al., IEEE Access 2018), baselines.md §D1.

Encoder Dense 9k → 6k → 3k → k (no bias, LeakyReLU 0.1) → BatchNorm → SparseReLU → SumToOne;
decoder Dense k → B, linear, no bias, non-negative (its weights are the endmembers);
spectral-angle loss; RMSprop. Glorot initialisation without VCA [C] — so after training the
learned endmembers are matched to the pipeline's ``M0`` (Hungarian on SAD) and reordered,
so the names given to ``M0`` stay with the closest learned spectra.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from hsu_geo.unmix.deep.base import DeepConfig, DeepUnmixer, check_choice
from hsu_geo.unmix.deep.layers import SparseReLU, SumToOne
from hsu_geo.unmix.deep.losses import spectral_angle


@dataclass(frozen=True)
class LinearAEConfig(DeepConfig):
    """DAEU settings [C: model-zoo Keras code]: RMSprop lr 2e-3 (encoder and decoder), batch
    6, 40 epochs on ``max_train_pixels`` = 2500 sampled pixels, no weight decay, Glorot init;
    ``min_steps`` 1000 [I] (only matters below 150 pixels: 40 epochs of batch 6 on 2500 pixels
    are 16,680 steps; 0 = the code's epochs).
    ``decoder_init``: ``glorot`` [C] or ``m0`` (VCA/library endmembers from the pipeline) [I].
    """

    seed: int = 0
    epochs: int = 40
    min_steps: int = 1000
    batch_size: int = 6
    lr_encoder: float = 2e-3
    lr_decoder: float = 2e-3
    weight_decay: float = 0.0
    max_train_pixels: int = 2500
    optimizer: str = "rmsprop"
    decoder_init: str = "glorot"

    def __post_init__(self) -> None:
        super().__post_init__()
        check_choice("optimizer", self.optimizer, ("rmsprop", "adam"))
        check_choice("decoder_init", self.decoder_init, ("glorot", "m0"))


class LinearAENet(nn.Module):
    """``x (b, L)`` → ``a (b, k)`` → ``x̂ = W a (b, L)``; ``perm`` (a buffer) reorders the
    endmembers after matching without touching the trained weights."""

    def __init__(self, n_bands: int, k: int) -> None:
        super().__init__()
        widths = [n_bands, 9 * k, 6 * k, 3 * k, k]
        layers: list[nn.Module] = []
        for a, b in itertools.pairwise(widths):
            layers += [nn.Linear(a, b, bias=False), nn.LeakyReLU(0.1)]
        self.encoder = nn.Sequential(*layers, nn.BatchNorm1d(k, eps=1e-3, momentum=0.01),
                                     SparseReLU(k), SumToOne())
        self.linear = nn.Linear(k, n_bands, bias=False)
        for m in self.modules():
            if isinstance(m, nn.Linear):
                nn.init.xavier_uniform_(m.weight)
        with torch.no_grad():
            self.linear.weight.clamp_(min=0.0)
        self.register_buffer("perm", torch.arange(k))

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        return self.encoder(x)[:, self.perm]

    def decode(self, a: torch.Tensor) -> torch.Tensor:
        inverse = torch.argsort(self.perm)
        return self.linear(a[:, inverse])

    def endmember_weight(self) -> torch.Tensor:
        return self.linear.weight[:, self.perm]


class LinearAEUnmixer(DeepUnmixer):
    name = "linear_ae"
    description = "LinearAE (DAEU): deep encoder, linear non-negative decoder, SAD loss (baseline)"
    doi = "10.1109/ACCESS.2018.2818280"
    input = "pixels"
    Config = LinearAEConfig

    def build_network(self, n_bands: int, k: int) -> nn.Module:
        return LinearAENet(n_bands, k)

    def param_groups(self, net: LinearAENet) -> list[dict[str, Any]]:
        cfg = self.config
        return [{"params": list(net.encoder.parameters()), "lr": cfg.lr_encoder,
                 "name": "encoder"},
                *self.decoder_groups(list(net.linear.parameters()), [], cfg.lr_decoder)]

    def _fit_stages(self, net: LinearAENet, X: torch.Tensor, M0: np.ndarray) -> None:
        cfg = self.config
        if cfg.decoder_init == "m0":
            with torch.no_grad():
                net.linear.weight.copy_(torch.from_numpy(M0.T.astype(np.float32)))
        self.fit_info["endmember_init"] = cfg.decoder_init

        def nonneg() -> None:
            with torch.no_grad():
                net.linear.weight.clamp_(min=0.0)

        self.run_stage("train", net, X,
                       lambda xb: (spectral_angle(net.decode(net.encode(xb)), xb), {}),
                       self.param_groups(net),
                       self.train_settings(cfg.epochs, cfg.batch_size, seed_offset=3,
                                           main=True),
                       optimizer=cfg.optimizer, weight_decay=cfg.weight_decay,
                       after_step=nonneg, schedule=True)
        self.match_to_start(net, M0)
