"""CResDAE (Zhao et al., Remote Sensing 17(21):3622, 2025): deep autoencoder with channel
attention and a residual encoder, linear + nonlinear-compensation decoder.

Spec: ``shared/models/cresdae.md``. Settings tagged [I] there are Config options with the spec's
default. Scene workflow of ``fit``: (1) the initial endmembers ``M0`` (VCA or a library, from the
pipeline) initialise the linear decoder; (2) the last layer of the nonlinear path starts at zero,
so the decoder starts as the linear mixing model exactly (``decoder_init="pretrain"``: the
NAE-style stage that fits the nonlinear path to observed pixels instead); (3) the autoencoder
is pretrained on synthetic linear / bilinear / post-nonlinear mixtures of ``M0`` at several
SNRs; (4) it is fine-tuned on the scene sample with the small decoder learning rate, for at
least ``min_steps`` optimiser steps. Endmembers are the linear decoder's weights.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from hsu_geo.errors import ConfigError
from hsu_geo.synth import MIXINGS, dirichlet_abundances, softmax_abundances, synthesize
from hsu_geo.unmix.deep._training import LossFn
from hsu_geo.unmix.deep.base import DeepConfig, DeepUnmixer, check_choice
from hsu_geo.unmix.deep.layers import (
    ABUNDANCE_ACTIVATIONS,
    ChannelAttention,
    ResidualBlock,
    abundance_activation,
)
from hsu_geo.unmix.deep.losses import (
    UNIFORM_MODES,
    entropy,
    mse_sum,
    sparsity_l12,
    spectral_angle,
    uniformity,
)


@dataclass(frozen=True)
class CResDAEConfig(DeepConfig):
    """CResDAE settings; [P] paper, [I] inferred (cresdae.md).

    Architecture: ``cam_mode`` se|cbam [I], ``cam_reduction`` [I], ``residual_layers`` (1–3,
    [I] 1), ``decoder_hidden`` [P] 512, ``decoder_skip`` (x̂ = ReLU(x_lin + g(x_lin)) [I]; False:
    ReLU(g(x_lin))), ``abundance`` softmax|absnorm [I], ``nonneg_endmembers`` (project the
    linear decoder to ≥ 0 after each step [I]).
    Loss: weights ``alpha_mse``, ``beta_sam`` [I] 1, ``gamma_uniform`` [P] 0.4,
    ``gamma_entropy`` [P] 0.01, ``gamma_sparse`` [P] 0.01; ``uniform_mode`` [I].
    Training budget: ``epochs`` 40 and ``batch_size`` 1024 [P] with ``min_steps`` 1000 [I] (a
    fine-tuning floor in optimiser steps, rounded up to whole epochs: 40 epochs of 1024 pixels
    are only 160 steps on a 64×64 scene, 40 on 32×32; chosen a priori, the same floor as NAE
    and LinearAE; 0 = the paper's epochs exactly; ``benchmarks/cresdae_budget.py``).
    ``weight_decay`` 1e-5 [I, NAE], not on the endmember matrix unless ``decay_endmembers``
    (the paper states no decay at all).
    Decoder start ``decoder_init``: ``zero`` (the last layer of the nonlinear path is zero, so
    x̂ = ReLU(W a) exactly at the start; needs ``decoder_skip``), ``auto`` (``zero`` with the
    skip, else ``pretrain``) or ``pretrain`` [I, NAE]:
    ``pretrain_steps`` full-batch Adam steps at ``pretrain_lr`` on
    ``pretrain_pixels`` observed pixels, stopping once the MSE is at most ``pretrain_tol`` [I]
    or after ``pretrain_patience`` steps without progress [I] (0 = all steps).
    Synthetic pretraining (scene workflow): ``synth_mixings`` × ``synth_snr_db`` datasets of
    ``synth_pixels`` pixels each, abundances ``synth_abundance`` (softmax with
    ``synth_temperature``, the per-pixel law of synthetic.md G1, or dirichlet), trained for
    ``synth_epochs`` on all datasets shuffled together (``synth_schedule="mixed"``) or one
    after another (``"sequential"``, linear→bilinear→pnmm × low→high SNR).
    Not in the paper (0 = the paper's workflow): ``synth_supervision`` adds the error of the
    known synthetic abundances, ``||a - a_true||²`` (sum over endmembers, mean over pixels),
    with this weight to the synthetic-pretraining loss; ``synth_lr_decoder`` > 0 replaces
    ``lr_decoder`` in that stage only (fine-tuning keeps ``lr_decoder``). Measured effect:
    ``benchmarks/cresdae_ablation.py``.
    """

    seed: int = 0
    epochs: int = 40
    min_steps: int = 1000
    batch_size: int = 1024
    lr_encoder: float = 1e-3
    lr_decoder: float = 1e-5
    weight_decay: float = 1e-5
    decoder_init: str = "auto"
    cam_mode: str = "se"
    cam_reduction: int = 16
    residual_layers: int = 1
    decoder_hidden: int = 512
    decoder_skip: bool = True
    abundance: str = "softmax"
    nonneg_endmembers: bool = False
    alpha_mse: float = 1.0
    beta_sam: float = 1.0
    gamma_uniform: float = 0.4
    gamma_entropy: float = 0.01
    gamma_sparse: float = 0.01
    uniform_mode: str = "batch_mean"
    pretrain_steps: int = 2000
    pretrain_lr: float = 1e-3
    pretrain_pixels: int = 1024
    pretrain_patience: int = 100
    pretrain_tol: float = 1e-6
    synthetic_pretrain: bool = True
    synth_mixings: tuple[str, ...] = ("linear", "bilinear", "pnmm")
    synth_snr_db: tuple[float, ...] = (10.0, 20.0, 30.0)
    synth_pixels: int = 2048
    synth_epochs: int = 40
    synth_abundance: str = "softmax"
    synth_temperature: float = 0.3
    synth_schedule: str = "mixed"
    synth_supervision: float = 0.0
    synth_lr_decoder: float = 0.0

    @property
    def decoder_start(self) -> str:
        """``decoder_init`` with ``auto`` resolved: ``zero`` or ``pretrain``."""
        if self.decoder_init != "auto":
            return self.decoder_init
        return "zero" if self.decoder_skip else "pretrain"

    def __post_init__(self) -> None:
        super().__post_init__()
        check_choice("cam_mode", self.cam_mode, ("se", "cbam"))
        check_choice("decoder_init", self.decoder_init, ("auto", "zero", "pretrain"))
        if self.decoder_init == "zero" and not self.decoder_skip:
            raise ConfigError("setting decoder_init=zero needs decoder_skip=true (without the "
                              "skip a zero nonlinear path outputs 0); use decoder_init=pretrain")
        check_choice("abundance", self.abundance, ABUNDANCE_ACTIVATIONS)
        check_choice("uniform_mode", self.uniform_mode, UNIFORM_MODES)
        check_choice("synth_abundance", self.synth_abundance, ("softmax", "dirichlet"))
        check_choice("synth_schedule", self.synth_schedule, ("mixed", "sequential"))
        for mixing in self.synth_mixings:
            check_choice("synth_mixings", mixing, MIXINGS)
        if not 1 <= self.residual_layers <= 3:
            raise ConfigError(f"setting residual_layers={self.residual_layers}: use 1, 2 or 3")
        positive = {"cam_reduction": self.cam_reduction, "decoder_hidden": self.decoder_hidden,
                    "pretrain_pixels": self.pretrain_pixels,
                    "synth_pixels": self.synth_pixels,
                    "synth_temperature": self.synth_temperature}
        for key, value in positive.items():
            if not value > 0:
                raise ConfigError(f"setting {key}={value!r} must be > 0")
        if self.synth_supervision < 0 or self.synth_lr_decoder < 0:
            raise ConfigError("synth_supervision and synth_lr_decoder must be >= 0")
        if min(self.pretrain_steps, self.pretrain_patience, self.synth_epochs) < 0:
            raise ConfigError("pretrain_steps, pretrain_patience and synth_epochs must be >= 0")


class CResDAENet(nn.Module):
    """Encoder (Table 1) → abundances on the simplex → linear decoder (layer 10) → nonlinear
    compensation (layers 11–14). ``x (b, L)`` → ``a (b, k)`` → ``x̂ (b, L)``."""

    def __init__(self, n_bands: int, k: int, cfg: CResDAEConfig) -> None:
        super().__init__()
        self.encoder = nn.Sequential(
            nn.Linear(n_bands, 128), nn.LeakyReLU(0.1),
            ChannelAttention(128, cfg.cam_reduction, cfg.cam_mode),
            ResidualBlock(128, cfg.residual_layers),
            nn.Linear(128, 64), nn.LeakyReLU(0.1),
            nn.Linear(64, 32), nn.LeakyReLU(0.1),
            nn.Linear(32, k),
        )
        self.linear = nn.Linear(k, n_bands, bias=False)
        self.nonlinear = nn.Sequential(
            nn.Linear(n_bands, cfg.decoder_hidden), nn.LeakyReLU(0.1),
            nn.Linear(cfg.decoder_hidden, n_bands),
        )
        self.abundance_kind = cfg.abundance
        self.skip = cfg.decoder_skip
        if cfg.decoder_start == "zero":
            self.zero_nonlinear()

    def zero_nonlinear(self) -> None:
        """Zero the last layer of the nonlinear path: g ≡ 0, so with the skip the decoder is
        x̂ = ReLU(W a), the linear mixing model (exactly, for W a ≥ 0)."""
        last = self.nonlinear[-1]
        with torch.no_grad():
            last.weight.zero_()
            last.bias.zero_()

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        return abundance_activation(self.encoder(x), self.abundance_kind)

    def restore(self, x_lin: torch.Tensor) -> torch.Tensor:
        """Nonlinear restoration of a linear mixture ``(b, L)`` (also used in pretraining)."""
        g = self.nonlinear(x_lin)
        return torch.relu(x_lin + g) if self.skip else torch.relu(g)

    def decode(self, a: torch.Tensor) -> torch.Tensor:
        return self.restore(self.linear(a))

    def endmember_weight(self) -> torch.Tensor:
        """``(L, k)``: columns are the endmembers (scaled units)."""
        return self.linear.weight


class CResDAEUnmixer(DeepUnmixer):
    name = "cresdae"
    description = ("CResDAE: attention + residual deep autoencoder, nonlinear decoder; "
                   "synthetic pretraining then scene fine-tuning")
    doi = "10.3390/rs17213622"
    input = "pixels"
    Config = CResDAEConfig

    def build_network(self, n_bands: int, k: int) -> nn.Module:
        return CResDAENet(n_bands, k, self.config)

    # ---- pieces -------------------------------------------------------------------------
    def loss(self, net: CResDAENet, x: torch.Tensor, a: torch.Tensor | None = None
             ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Composite loss (cresdae.md §4) and its terms; ``a`` = ``net.encode(x)`` when the
        caller already has it."""
        cfg = self.config
        if a is None:
            a = net.encode(x)
        x_hat = net.decode(a)
        terms = {"mse": mse_sum(x_hat, x), "sam": spectral_angle(x_hat, x),
                 "uniform": uniformity(a, cfg.uniform_mode), "entropy": entropy(a),
                 "sparse": sparsity_l12(a)}
        total = (cfg.alpha_mse * terms["mse"] + cfg.beta_sam * terms["sam"]
                 + cfg.gamma_uniform * terms["uniform"] + cfg.gamma_entropy * terms["entropy"]
                 + cfg.gamma_sparse * terms["sparse"])
        return total, {key: v.detach() for key, v in terms.items()}

    def param_groups(self, net: CResDAENet, lr_decoder: float | None = None
                     ) -> list[dict[str, Any]]:
        """Encoder (incl. attention) at ``lr_encoder``; linear decoder (the endmembers, no
        weight decay unless ``decay_endmembers``) and nonlinear decoder at ``lr_decoder``."""
        cfg = self.config
        lr = cfg.lr_decoder if lr_decoder is None else lr_decoder
        return [
            {"params": list(net.encoder.parameters()), "lr": cfg.lr_encoder, "name": "encoder"},
            *self.decoder_groups(list(net.linear.parameters()),
                                 list(net.nonlinear.parameters()), lr),
        ]

    def _project(self, net: CResDAENet) -> Callable[[], None] | None:
        """The optional non-negativity projection of the linear decoder, run after each step."""
        if not self.config.nonneg_endmembers:
            return None

        def clamp() -> None:
            with torch.no_grad():
                net.linear.weight.clamp_(min=0.0)
        return clamp

    def synthetic_datasets(self, M0: np.ndarray) -> list[tuple[str, np.ndarray]]:
        """``[(label, Y (n, L) float32)]``: mixtures of ``M0 (k, L)`` per mixing model and
        SNR (synthetic.md §1), seeded from the config. ``M0`` is in the scaled units of the
        training pixels and the mixtures are not rescaled, so one decoder fits both."""
        return [(label, Y) for label, Y, _ in self._synthetic_with_truth(M0)]

    def _synthetic_with_truth(self, M0: np.ndarray
                              ) -> list[tuple[str, np.ndarray, np.ndarray]]:
        """Like :meth:`synthetic_datasets`, with the abundances ``A (n, k)`` of each set."""
        cfg = self.config
        rng = np.random.default_rng([cfg.seed, 2])
        out = []
        for mixing in cfg.synth_mixings:
            for snr in cfg.synth_snr_db:
                n, k = cfg.synth_pixels, M0.shape[0]
                A = (softmax_abundances(n, k, rng, cfg.synth_temperature)
                     if cfg.synth_abundance == "softmax" else dirichlet_abundances(n, k, rng))
                Y, A = synthesize(M0, n, mixing, snr, rng, A=A)
                out.append((f"{mixing}_{snr:g}dB", Y.astype(np.float32),
                            A.astype(np.float32)))
        return out

    def _synthetic_loss(self, net: CResDAENet, n_bands: int) -> LossFn:
        """Loss over rows ``[x | a_true]``: the composite loss of ``x`` plus, when
        ``synth_supervision`` > 0, the weighted abundance error against ``a_true``."""
        weight = self.config.synth_supervision

        def loss(zb: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
            x, a_true = zb[:, :n_bands], zb[:, n_bands:]
            a = net.encode(x)
            total, terms = self.loss(net, x, a)
            if weight > 0:
                err = ((a - a_true) ** 2).sum(dim=1).mean()
                terms["abundance_error"] = err.detach()
                total = total + weight * err
            return total, terms
        return loss

    # ---- the workflow ---------------------------------------------------------------------
    def _fit_stages(self, net: CResDAENet, X: torch.Tensor, M0: np.ndarray) -> None:
        cfg = self.config
        with torch.no_grad():
            net.linear.weight.copy_(torch.from_numpy(M0.T.astype(np.float32)))
        self.fit_info["endmember_init"] = "linear decoder <- M0 (VCA/library from the pipeline)"
        if cfg.decoder_start == "pretrain":
            self.pretrain_nonlinear(net, X)
        self.fit_info["decoder_init"] = cfg.decoder_start
        if cfg.synthetic_pretrain and cfg.synth_epochs > 0 and cfg.synth_mixings \
                and cfg.synth_snr_db:
            self._pretrain_synthetic(net, M0, X.device)
        self.run_stage("finetune", net, X, lambda xb: self.loss(net, xb),
                       self.param_groups(net),
                       self.train_settings(cfg.epochs, cfg.batch_size, seed_offset=3,
                                           main=True),
                       weight_decay=cfg.weight_decay, after_step=self._project(net),
                       schedule=True)

    def _pretrain_synthetic(self, net: CResDAENet, M0: np.ndarray,
                            device: torch.device) -> None:
        cfg = self.config
        sets = self._synthetic_with_truth(M0)
        # rows [x | a_true] so the known abundances travel with their pixels through shuffling
        rows = [(label, np.concatenate([Y, A], axis=1)) for label, Y, A in sets]
        if cfg.synth_schedule == "sequential":
            parts = [(f"synthetic_pretrain:{label}", Z) for label, Z in rows]
        else:
            parts = [("synthetic_pretrain", np.concatenate([Z for _, Z in rows]))]
        loss = self._synthetic_loss(net, M0.shape[1])
        for i, (stage, Z) in enumerate(parts):
            groups = self.param_groups(net, cfg.synth_lr_decoder or None)
            self.run_stage(
                stage, net, torch.from_numpy(Z).to(device), loss, groups,
                self.train_settings(cfg.synth_epochs, cfg.batch_size, seed_offset=10 + i),
                weight_decay=cfg.weight_decay, after_step=self._project(net),
                extra={"datasets": [label for label, _ in rows] if len(parts) == 1
                       else [stage.split(":", 1)[1]],
                       "pixels_per_dataset": cfg.synth_pixels,
                       "abundances": cfg.synth_abundance,
                       "abundance_supervision": cfg.synth_supervision})
