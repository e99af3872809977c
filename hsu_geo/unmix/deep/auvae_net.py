"""AUVAE-Net (Adversarial U-shaped Variational Autoencoder Network; thesis repository
``Tai-Chi-Yueh/AUVAE-Net``, built on AAENet, Jin et al., IEEE TNNLS 2021).

Spec: ``shared/models/auvae_net.md``; settings tagged [I] there are Config options with the
spec's default. A per-pixel model: the code's "U-Net" runs on a 1×1 spatial map, so each 3×3
convolution sees only its centre tap and is a fully connected layer (``nn.Linear`` here, with
the Keras Glorot scale of the full 3×3 kernel). Network: U-shaped feature extractor (widths
64-128-256-512-256-128-64 with skip concatenations) → VAE encoder (9k, 6k, 3k, k) with ``mu``
and ``log_var`` heads → abundances â = SumToOne(SparseReLU(BN(mu))) → reparameterised
z = â + exp(½ log_var)·ε → non-negative linear decoder W (its weights are the endmembers) →
Dense B→B + LeakyReLU (x̂, the reconstruction the loss sees). A separate discriminator
(k → d2 → d1 → 1) is trained to tell prior samples (N(0, I) [C]) from â.

Training (the code's phases, per chunk of ``N // chunks`` consecutive pixels, per epoch):
(1) autoencoder, ``ae_steps`` Adam steps on the chunk: reconstruction (normSAD of x̂) +
regularisation (KL of the VAE, the endmember regulariser, L2 of the U-Net output layer);
(2) discriminator, ``disc_epochs`` passes over [â of the chunk (eval mode); as many prior
samples], shuffled, batch = chunk; (3) generator (adversarial), ``gen_steps`` steps pushing
the encoder's â towards "prior" under the frozen discriminator. Three Adam optimisers.

Deviation from the released code: it regularises the endmembers towards the dataset's GROUND
TRUTH endmembers (``E_reg = l_vca·SAD(W, GT)``), which leaks the answer into training. Here the
reference is the pipeline's initial endmembers ``M0`` (extracted from the scene, VCA-like, or a
library) — spec §5's project default. Passing ground-truth endmembers as the library
reproduces the code for parity runs. W itself starts Glorot-normal [C], not at ``M0``, so the
learned endmembers are matched to ``M0`` afterwards (Hungarian on SAD) and reordered.

Checkpoints (``--save-model``) hold the autoencoder (U-Net, encoder, decoder incl. the B×B
output layer); the discriminator is only needed while training and is not saved.
"""

from __future__ import annotations

import contextlib
import itertools
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.nn import functional

from hsu_geo.errors import ConfigError
from hsu_geo.unmix.deep._training import (
    TrainEvent,
    TrainResult,
    _batches,
)
from hsu_geo.unmix.deep.base import DeepConfig, DeepUnmixer, check_choice
from hsu_geo.unmix.deep.layers import SparseReLU, SumToOne

SAD_MODES = ("code", "angle")
PRIORS = ("normal", "dirichlet")
INITS = ("keras", "torch")


@dataclass(frozen=True)
class AUVAENetConfig(DeepConfig):
    """AUVAE-Net settings; [C] released code, [I] inferred (auvae_net.md).

    Schedule [C]: ``epochs`` 20 passes over the ``chunks`` = 10 consecutive chunks of
    ``N // chunks`` pixels (remainder left out: ``drop_last``; unshuffled: ``shuffle``
    False); per chunk ``ae_steps`` 30 autoencoder steps, ``disc_epochs`` 10 discriminator
    passes (2 steps each) and ``gen_steps`` 10 generator steps. The chunk is at most
    ``batch_size`` [I] 65536 pixels (memory cap); a sample with fewer than ``min_batch`` [I]
    32 pixels per chunk is cut into ``N // min_batch`` near-equal chunks covering every pixel
    (one chunk of all pixels below ``min_batch``: a sample smaller than a chunk trains with
    the smaller chunk). ``min_steps`` [I] 6000 = the code's autoencoder steps (20×10×30): a
    floor in autoencoder steps, rounded up to whole epochs, for samples with fewer than
    ``chunks`` chunks. ``keep_best`` restores the epoch with the lowest mean autoencoder loss;
    ``early_stop_patience`` watches that loss too; ``lr_schedule`` (when the base config has
    it) steps all three optimisers once per epoch. Measured cost: the schedule is 6000 + 4000
    + 2000 optimiser steps whatever N is, so training takes minutes on CPU even on small
    scenes (``benchmarks/auvae_speed.py``).
    Optimisers [C]: Adam at ``lr_encoder`` / ``lr_decoder`` 2e-4 (autoencoder),
    ``lr_generator`` 2e-4, ``lr_discriminator`` 1e-4, Keras constants (β 0.9/0.999, eps 1e-7),
    no weight decay.
    Network [C]: ``leaky_slope`` 0.2, ``dropout`` 0.2 in the bottleneck, ``unet_width`` 64
    (widths ×1, 2, 4, 8); ``init`` ``keras`` (Glorot with the 3×3 kernel's fan [I]) or
    ``torch`` (PyTorch defaults).
    Loss [C]: normSAD = ``mse_weight`` 0.008·MSE + ``sad_weight`` 1·SAD(x, x̂); autoencoder
    loss = normSAD + ``vae_weight``·|normSAD + ``kl_weight``·KL| + ``l_vca`` 0.03·SAD(W, M0) +
    ``unet_l2`` 1e-3·‖W_out‖². ``sad_mode``: ``code`` (the code's SAD, arccos of the mean over
    ALL elements of the normalised product — ≈ π/2 − mean cosine / B, a very weak term) or
    ``angle`` [I] (mean per-row spectral angle; changes the loss scale, so retune ``l_vca``).
    Prior [C]: ``prior`` ``normal`` (N(0, I), as the code) or ``dirichlet`` [I] (flat
    Dirichlet, on the simplex like the abundances).
    """

    seed: int = 0
    epochs: int = 20
    min_steps: int = 6000
    batch_size: int = 65536
    chunks: int = 10
    min_batch: int = 32
    drop_last: bool = True
    shuffle: bool = False
    ae_steps: int = 30
    disc_epochs: int = 10
    gen_steps: int = 10
    lr_encoder: float = 2e-4
    lr_decoder: float = 2e-4
    lr_generator: float = 2e-4
    lr_discriminator: float = 1e-4
    adam_eps: float = 1e-7
    weight_decay: float = 0.0
    leaky_slope: float = 0.2
    dropout: float = 0.2
    unet_width: int = 64
    init: str = "keras"
    mse_weight: float = 0.008
    sad_weight: float = 1.0
    vae_weight: float = 1.0
    kl_weight: float = 1.0
    l_vca: float = 0.03
    unet_l2: float = 1e-3
    sad_mode: str = "code"
    prior: str = "normal"

    def __post_init__(self) -> None:
        super().__post_init__()
        check_choice("sad_mode", self.sad_mode, SAD_MODES)
        check_choice("prior", self.prior, PRIORS)
        check_choice("init", self.init, INITS)
        positive = {"chunks": self.chunks, "min_batch": self.min_batch,
                    "unet_width": self.unet_width}
        for key, value in positive.items():
            if value < 1:
                raise ConfigError(f"setting {key}={value!r} must be >= 1")
        counts = {"ae_steps": self.ae_steps, "disc_epochs": self.disc_epochs,
                  "gen_steps": self.gen_steps}
        for key, value in counts.items():
            if value < 0:
                raise ConfigError(f"setting {key}={value!r} must be >= 0")
        weights = {"lr_generator": self.lr_generator, "lr_discriminator": self.lr_discriminator,
                   "mse_weight": self.mse_weight, "sad_weight": self.sad_weight,
                   "vae_weight": self.vae_weight, "kl_weight": self.kl_weight,
                   "l_vca": self.l_vca, "unet_l2": self.unet_l2}
        for key, value in weights.items():
            if not value >= 0:
                raise ConfigError(f"setting {key}={value!r} must be >= 0")
        if not 0 <= self.dropout < 1:
            raise ConfigError(f"setting dropout={self.dropout!r}: use 0 <= dropout < 1")

    def chunk_size(self, n: int) -> int:
        """Pixels per chunk for a sample of ``n`` pixels: ``n // chunks`` clamped to
        [``min_batch``, ``batch_size``], and at most ``n``."""
        return max(1, min(n, self.batch_size, max(n // self.chunks, self.min_batch)))


# ---- losses (auvae_net.md §4) ----------------------------------------------------------------
def _unit_rows(u: torch.Tensor) -> torch.Tensor:
    """Rows scaled to unit L2 norm (TF ``l2_normalize``: norm floored at 1e-6)."""
    return u * torch.rsqrt(torch.square(u).sum(dim=1, keepdim=True).clamp_min(1e-12))


def sad_loss(u: torch.Tensor, v: torch.Tensor, mode: str = "code") -> torch.Tensor:
    """"SAD" between the rows of ``u, v (n, B)`` (radians).

    ``code``: arccos of the mean over all n·B elements of the product of the unit rows
    (the released code's form, = arccos(mean cosine / B)); ``angle``: mean over rows of the
    spectral angle. Cosines are clamped to [−1 + 1e-7, 1 − 1e-7] for a finite gradient.
    """
    prod = _unit_rows(u) * _unit_rows(v)
    cos = prod.mean() if mode == "code" else prod.sum(dim=1)
    return torch.acos(cos.clamp(-1.0 + 1e-7, 1.0 - 1e-7)).mean()


def kl_term(a: torch.Tensor, log_var: torch.Tensor) -> torch.Tensor:
    """The code's KL: −½·mean(1 + log_var − â² − exp(log_var)) over batch and k."""
    return -0.5 * torch.mean(1.0 + log_var - torch.square(a) - torch.exp(log_var))


# ---- networks ------------------------------------------------------------------------------
def _glorot_uniform(layer: nn.Linear, taps: int = 1) -> None:
    """Keras Glorot-uniform of a kernel with ``taps`` spatial positions (9 for 3×3), of which
    only the centre is used; bias zero."""
    fan_out, fan_in = layer.weight.shape
    limit = math.sqrt(6.0 / (taps * (fan_in + fan_out)))
    nn.init.uniform_(layer.weight, -limit, limit)
    if layer.bias is not None:
        nn.init.zeros_(layer.bias)


class AUVAENet(nn.Module):
    """The autoencoder. ``x (b, L)`` → â ``(b, k)`` (simplex) → ``x_lin = W â`` (b, L) and
    the network reconstruction ``x̂ = LReLU(D x_lin + d)``. ``perm`` (a buffer) reorders the
    endmembers after matching to ``M0`` without touching the trained weights."""

    def __init__(self, n_bands: int, k: int, cfg: AUVAENetConfig) -> None:
        super().__init__()
        w = cfg.unet_width
        self.slope = cfg.leaky_slope

        def bn(c: int) -> nn.BatchNorm1d:  # Keras BatchNormalization: momentum 0.99, eps 1e-3
            return nn.BatchNorm1d(c, eps=1e-3, momentum=0.01)

        self.conv1, self.bn1 = nn.Linear(n_bands, w), bn(w)
        self.conv2, self.bn2 = nn.Linear(w, 2 * w), bn(2 * w)
        self.conv3, self.bn3 = nn.Linear(2 * w, 4 * w), bn(4 * w)
        self.bottleneck = nn.Linear(4 * w, 8 * w)
        self.dropout = nn.Dropout(cfg.dropout)
        self.deconv1 = nn.Linear(8 * w, 4 * w)
        self.deconv2 = nn.Linear(8 * w, 2 * w)
        self.deconv3 = nn.Linear(4 * w, w)
        self.unet_out = nn.Linear(2 * w, n_bands)  # the 1×1 conv with the L2 penalty
        self.encoder = nn.Sequential(
            nn.Linear(n_bands, 9 * k), nn.LeakyReLU(self.slope),
            nn.Linear(9 * k, 6 * k), nn.LeakyReLU(self.slope),
            nn.Linear(6 * k, 3 * k), nn.LeakyReLU(self.slope),
            nn.Linear(3 * k, k, bias=False), nn.LeakyReLU(self.slope))
        self.mu = nn.Linear(k, k, bias=False)
        self.log_var = nn.Linear(k, k, bias=False)
        self.head = nn.Sequential(bn(k), SparseReLU(k), SumToOne())
        self.linear = nn.Linear(k, n_bands, bias=False)  # weight (L, k): the endmembers
        self.y_hat = nn.Linear(n_bands, n_bands)
        if cfg.init == "keras":
            for layer in (self.conv1, self.conv2, self.conv3, self.bottleneck, self.deconv1,
                          self.deconv2, self.deconv3):
                _glorot_uniform(layer, taps=9)
            for layer in (self.unet_out, self.mu, self.log_var, self.y_hat,
                          *(m for m in self.encoder if isinstance(m, nn.Linear))):
                _glorot_uniform(layer)
            std = math.sqrt(2.0 / (k + n_bands)) / 0.87962566103423978  # TF truncated normal
            nn.init.trunc_normal_(self.linear.weight, 0.0, std, -2 * std, 2 * std)
        self.register_buffer("perm", torch.arange(k))

    def _act(self, h: torch.Tensor) -> torch.Tensor:
        return functional.leaky_relu(h, self.slope)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """The U-shaped extractor: ``(b, L)`` → ``(b, L)``."""
        c1 = self.bn1(self._act(self.conv1(x)))
        c2 = self.bn2(self._act(self.conv2(c1)))
        c3 = self.bn3(self._act(self.conv3(c2)))
        b = self.dropout(self._act(self.bottleneck(c3)))
        d1 = self._act(self.deconv1(b))
        d2 = self._act(self.deconv2(torch.cat([c3, d1], dim=1)))
        d3 = self._act(self.deconv3(torch.cat([c2, d2], dim=1)))
        return self._act(self.unet_out(torch.cat([c1, d3], dim=1)))

    def latent(self, x: torch.Tensor, with_log_var: bool = True
               ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """``(â (b, k), log_var (b, k) or None)`` in the network's (unpermuted) order."""
        h = self.encoder(self.features(x))
        a = self.head(self.mu(h))
        return a, (self.log_var(h) if with_log_var else None)

    def reconstruct_network(self, z: torch.Tensor) -> torch.Tensor:
        """x̂ of a latent ``z (b, k)`` (unpermuted): the loss's reconstruction."""
        return self._act(self.y_hat(self.linear(z)))

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        return self.latent(x, with_log_var=False)[0][:, self.perm]

    def decode(self, a: torch.Tensor) -> torch.Tensor:
        """The linear mixture ``W a`` (the spec's reported reconstruction, not x̂)."""
        return self.linear(a[:, torch.argsort(self.perm)])

    def endmember_weight(self) -> torch.Tensor:
        return self.linear.weight[:, self.perm]

    def generator_parameters(self) -> list[nn.Parameter]:
        """What the generator step trains: the path x → â (not log_var, not the decoder)."""
        skip = {id(p) for m in (self.log_var, self.linear, self.y_hat) for p in m.parameters()}
        return [p for p in self.parameters() if id(p) not in skip]

    def project(self, endmembers: bool = True) -> None:
        """Keras constraints after an update of the variables it trained: SparseReLU
        thresholds ≥ 0 and (``endmembers``) W ≥ 0."""
        with torch.no_grad():
            if endmembers:
                self.linear.weight.clamp_(min=0.0)
            self.head[1].alpha.clamp_(min=0.0)


def build_discriminator(k: int, n_bands: int, init: str = "keras") -> nn.Sequential:
    """k → d2 (ReLU) → d1 (ReLU) → 1 logit, d1 = ⌈1.2 B⌉ + 5, d2 = max(⌈B/4⌉, k + 2) + 3."""
    d1 = math.ceil(1.2 * n_bands) + 5
    d2 = max(math.ceil(n_bands / 4), k + 2) + 3
    disc = nn.Sequential(nn.Linear(k, d2), nn.ReLU(), nn.Linear(d2, d1), nn.ReLU(),
                         nn.Linear(d1, 1))
    if init == "keras":
        for layer in disc:
            if isinstance(layer, nn.Linear):
                _glorot_uniform(layer)
    return disc


def _adam(groups: list[dict[str, Any]], cfg: AUVAENetConfig, weight_decay: float = 0.0
          ) -> torch.optim.Adam:
    """Adam over ``groups`` with the config's constants; the fused kernel where torch has one
    (same update rule, about 5x faster on CPU for this ~0.4 M-parameter network)."""
    groups = [g for g in groups if list(g["params"])]
    kw = {"betas": tuple(cfg.adam_betas), "eps": cfg.adam_eps, "weight_decay": weight_decay}
    try:
        return torch.optim.Adam(groups, fused=True, **kw)
    except (RuntimeError, TypeError):  # no fused kernel for this device / torch version
        return torch.optim.Adam(groups, **kw)


# ---- the three phases --------------------------------------------------------------------------
class AUVAEPhases:
    """Optimisers and one-step updates of the three phases on a network and discriminator.

    ``E (k, L)``: the endmember reference of the regulariser (scaled ``M0``). Random draws
    (dropout, ε, prior samples, discriminator shuffling) come from torch's global RNG, which the
    caller seeds; prior samples and shuffles from ``gen`` when given.
    """

    def __init__(self, net: AUVAENet, disc: nn.Module, E: torch.Tensor, cfg: AUVAENetConfig,
                 groups: list[dict[str, Any]], gen: torch.Generator | None = None) -> None:
        self.net, self.disc, self.E, self.cfg, self.gen = net, disc, E, cfg, gen
        self.opt_ae = _adam(groups, cfg, cfg.weight_decay)
        self.opt_gen = _adam([{"params": net.generator_parameters(), "lr": cfg.lr_generator,
                               "name": "generator"}], cfg)
        self.opt_disc = _adam([{"params": list(disc.parameters()),
                                "lr": cfg.lr_discriminator, "name": "discriminator"}], cfg)

    # losses
    def ae_loss(self, x: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Autoencoder objective (reconstruction + regularisation) of a batch ``x (b, L)``."""
        cfg, net = self.cfg, self.net
        a, log_var = net.latent(x)
        z = a + torch.exp(0.5 * log_var) * torch.randn(a.shape, device=a.device,
                                                       dtype=a.dtype)
        x_hat = net.reconstruct_network(z)
        norm_sad = (cfg.mse_weight * torch.square(x - x_hat).mean()
                    + cfg.sad_weight * sad_loss(x, x_hat, cfg.sad_mode))
        kl = kl_term(a, log_var)
        vae = torch.abs(norm_sad + cfg.kl_weight * kl)
        e_reg = sad_loss(net.linear.weight.T, self.E, cfg.sad_mode)
        l2 = torch.square(net.unet_out.weight).sum()
        total = norm_sad + cfg.vae_weight * vae + cfg.l_vca * e_reg + cfg.unet_l2 * l2
        terms = {"norm_sad": norm_sad, "kl": kl, "endmember_reg": e_reg, "unet_l2": l2}
        return total, {key: v.detach() for key, v in terms.items()}

    def disc_loss(self, samples: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """BCE of the discriminator on ``samples (b, k)`` with ``labels (b,)`` (1 = prior)."""
        return functional.binary_cross_entropy_with_logits(self.disc(samples)[:, 0], labels)

    def gen_loss(self, x: torch.Tensor) -> torch.Tensor:
        """BCE of the (frozen) discriminator on â of ``x`` towards "prior" (label 1)."""
        a, _ = self.net.latent(x, with_log_var=False)
        logits = self.disc(a)[:, 0]
        return functional.binary_cross_entropy_with_logits(logits, torch.ones_like(logits))

    def prior(self, n: int, k: int, device: torch.device) -> torch.Tensor:
        """``n`` "real" samples of the adversarial prior."""
        if self.cfg.prior == "normal":
            return torch.randn((n, k), generator=self.gen).to(device)
        e = -torch.log(torch.rand((n, k), generator=self.gen).clamp_min(1e-12))
        return (e / e.sum(dim=1, keepdim=True)).to(device)  # flat Dirichlet

    # steps
    def ae_step(self, x: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        self.net.train()
        self.opt_ae.zero_grad(set_to_none=True)
        loss, terms = self.ae_loss(x)
        loss.backward()
        self.opt_ae.step()
        self.net.project()
        return loss.detach(), terms

    def disc_data(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``[â of x (eval mode); as many prior samples]`` and labels ``[0…; 1…]``."""
        self.net.eval()
        with torch.no_grad():
            fake = self.net.latent(x, with_log_var=False)[0]
        real = self.prior(fake.shape[0], fake.shape[1], fake.device)
        labels = torch.cat([torch.zeros(fake.shape[0]), torch.ones(fake.shape[0])])
        return torch.cat([fake, real]), labels.to(fake.device)

    def disc_epoch(self, samples: torch.Tensor, labels: torch.Tensor, batch: int
                   ) -> torch.Tensor:
        """One shuffled pass over the discriminator data in batches of ``batch``; returns the
        sum of the batch losses (detached)."""
        order = torch.randperm(samples.shape[0], generator=self.gen).to(samples.device)
        total = torch.zeros((), device=samples.device)
        for start in range(0, samples.shape[0], batch):
            idx = order[start:start + batch]
            self.opt_disc.zero_grad(set_to_none=True)
            loss = self.disc_loss(samples[idx], labels[idx])
            loss.backward()
            self.opt_disc.step()
            total += loss.detach()
        return total

    def gen_step(self, x: torch.Tensor) -> torch.Tensor:
        self.net.train()
        self.disc.requires_grad_(False)
        try:
            self.opt_gen.zero_grad(set_to_none=True)
            loss = self.gen_loss(x)
            loss.backward()
            self.opt_gen.step()
        finally:
            self.disc.requires_grad_(True)
        self.net.project(endmembers=False)  # the generator does not train W
        return loss.detach()


@dataclass
class _Record:
    """Per-phase bookkeeping turned into a :class:`TrainResult`."""

    name: str
    history: list[float]
    steps: int = 0
    seconds: float = 0.0
    terms: dict[str, float] | None = None


# ---- the unmixer ---------------------------------------------------------------------------
class AUVAENetUnmixer(DeepUnmixer):
    name = "auvae_net"
    description = ("AUVAE-Net: U-shaped extractor + VAE encoder, non-negative linear decoder, "
                   "adversarial abundance prior (AAENet family)")
    doi = "10.1109/TNNLS.2021.3114203"  # AAENet, the base model; AUVAE-Net is a thesis repo
    input = "pixels"
    Config = AUVAENetConfig

    def build_network(self, n_bands: int, k: int) -> nn.Module:
        return AUVAENet(n_bands, k, self.config)

    def param_groups(self, net: AUVAENet) -> list[dict[str, Any]]:
        """Autoencoder groups: everything before the decoder at ``lr_encoder``; the endmember
        matrix and the B×B output layer at ``lr_decoder``."""
        decoder = {id(p) for m in (net.linear, net.y_hat) for p in m.parameters()}
        encoder = [p for p in net.parameters() if id(p) not in decoder]
        return [{"params": encoder, "lr": self.config.lr_encoder, "name": "encoder"},
                *self.decoder_groups(list(net.linear.parameters()),
                                     list(net.y_hat.parameters()), self.config.lr_decoder)]

    def plan(self, n: int) -> tuple[int, list[tuple[int, int]], int]:
        """``(chunk, chunk slices, epochs)`` for ``n`` training pixels. When ``n // chunks``
        is at least ``min_batch``: the code's consecutive chunks of ``n // chunks`` (capped at
        ``batch_size``; the remainder left out with ``drop_last``). Smaller samples:
        ``n // min_batch`` (at least 1) near-equal chunks covering every pixel, so no pixel
        is silently never trained. Epochs are raised so the autoencoder runs at least
        ``min_steps`` steps."""
        cfg = self.config
        chunk = cfg.chunk_size(n)
        if n // cfg.chunks >= cfg.min_batch:
            slices = _batches(n, chunk, cfg.drop_last)
        else:
            edges = np.linspace(0, n, max(1, n // chunk) + 1).round().astype(int)
            slices = [(int(a), int(b)) for a, b in itertools.pairwise(edges)]
        per_epoch = len(slices) * cfg.ae_steps
        epochs = cfg.epochs
        if epochs > 0 and per_epoch > 0 and cfg.min_steps:
            epochs = max(epochs, math.ceil(cfg.min_steps / per_epoch))
        return max(b - a for a, b in slices), slices, epochs

    def _fit_stages(self, net: AUVAENet, X: torch.Tensor, M0: np.ndarray) -> None:
        cfg = self.config
        dev = X.device
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(cfg.seed * 7919 + 5)
            disc = build_discriminator(int(M0.shape[0]), int(X.shape[1]), cfg.init).to(dev)
        E = torch.from_numpy(np.ascontiguousarray(M0, dtype=np.float32)).to(dev)
        gen = torch.Generator().manual_seed(cfg.seed * 7919 + 3)
        phases = AUVAEPhases(net, disc, E, cfg, self.param_groups(net), gen)
        n = int(X.shape[0])
        chunk, slices, epochs = self.plan(n)
        used = slices[-1][1] - slices[0][0]
        recs = {key: _Record(key, []) for key in ("autoencoder", "discriminator", "generator")}
        best, stale, stopped = math.inf, 0, False
        kept: tuple[float, int, dict[str, torch.Tensor]] | None = None
        devices = [dev.index or 0] if dev.type == "cuda" else []
        schedulers = self._schedulers(phases, epochs)
        scope = getattr(self, "precision_scope", contextlib.nullcontext)  # bf16 autocast
        with torch.random.fork_rng(devices=devices), scope():
            torch.manual_seed(cfg.seed * 7919 + 4)
            for epoch in range(epochs):
                order = torch.randperm(n, generator=gen).to(dev) if cfg.shuffle else None
                sums = {key: torch.zeros((), device=dev) for key in recs}
                term_sums: dict[str, torch.Tensor] = {}
                for start, stop in slices:
                    xb = X[order[start:stop]] if order is not None else X[start:stop]
                    weight = (stop - start) / used
                    sums["autoencoder"] += self._timed(
                        recs["autoencoder"], cfg.ae_steps, self._ae_steps, phases, xb,
                        term_sums, weight) * weight
                    if cfg.disc_epochs:
                        sums["discriminator"] += self._timed(
                            recs["discriminator"], 0, self._disc_steps, phases, xb,
                            recs) * weight
                    sums["generator"] += self._timed(
                        recs["generator"], cfg.gen_steps, self._gen_steps, phases, xb) * weight
                losses = {key: float(v) for key, v in sums.items()}  # one sync per epoch
                ae_loss = losses["autoencoder"]
                if not all(math.isfinite(v) for v in losses.values()):
                    raise ConfigError(
                        f"auvae_net: training diverged (losses {losses} at epoch {epoch + 1}); "
                        "lower the learning rates, e.g. --set lr_encoder=1e-4")
                for key, rec in recs.items():
                    rec.history.append(losses[key])
                recs["autoencoder"].terms = {k: float(v) for k, v in term_sums.items()}
                for sched in schedulers:
                    sched.step()
                if cfg.keep_best and (kept is None or ae_loss < kept[0]):
                    kept = (ae_loss, epoch + 1,
                            {k: v.detach().clone() for k, v in net.state_dict().items()})
                if self.progress is not None:
                    self.progress(TrainEvent("adversarial", epoch + 1, epochs, ae_loss))
                if cfg.early_stop_patience > 0:
                    if ae_loss < best - cfg.early_stop_min_delta * abs(
                            best if math.isfinite(best) else 0):
                        best, stale = ae_loss, 0
                    else:
                        stale += 1
                        if stale >= cfg.early_stop_patience:
                            stopped = True
                            break
        if kept is not None:
            net.load_state_dict(kept[2])
        net.eval()
        self._record(recs, chunk, n, epochs, stopped, None if kept is None else kept[1],
                     phases)
        self.fit_info["endmember_reference"] = ("M0 (the pipeline's initial endmembers), "
                                                "not the ground truth of the released code")
        self.fit_info["chunks_per_epoch"] = len(slices)
        self.fit_info["reconstruction_rmse"] = self._reconstruction_check(net, X)
        self.match_to_start(net, M0)

    def _schedulers(self, phases: AUVAEPhases, epochs: int
                    ) -> list[torch.optim.lr_scheduler.LRScheduler]:
        """The config's ``lr_schedule`` (``step``: × ``lr_gamma`` every ``lr_step`` epochs;
        ``cosine``: to 0 over the planned epochs), applied per epoch to all three optimisers."""
        cfg = self.config
        kind = getattr(cfg, "lr_schedule", "none")
        if kind == "none":
            return []
        self.fit_info["lr_schedule"] = kind
        sched = torch.optim.lr_scheduler
        return [sched.StepLR(opt, step_size=cfg.lr_step, gamma=cfg.lr_gamma) if kind == "step"
                else sched.CosineAnnealingLR(opt, T_max=max(1, epochs))
                for opt in (phases.opt_ae, phases.opt_disc, phases.opt_gen)]

    # ---- phase runners (return the mean loss of the phase on the chunk, detached) ----------
    @staticmethod
    def _timed(rec: _Record, steps: int, fn: Callable[..., torch.Tensor], *args: Any
               ) -> torch.Tensor:
        t0 = time.perf_counter()
        out = fn(*args)
        rec.seconds += time.perf_counter() - t0
        rec.steps += steps
        return out

    def _ae_steps(self, phases: AUVAEPhases, xb: torch.Tensor,
                  term_sums: dict[str, torch.Tensor], weight: float) -> torch.Tensor:
        steps = self.config.ae_steps
        total = torch.zeros((), device=xb.device)
        for _ in range(steps):
            loss, terms = phases.ae_step(xb)
            total += loss
        for key, value in terms.items() if steps else ():
            term_sums[key] = term_sums.get(key, 0.0) + value * weight
        return total / max(steps, 1)

    def _disc_steps(self, phases: AUVAEPhases, xb: torch.Tensor,
                    recs: dict[str, _Record]) -> torch.Tensor:
        samples, labels = phases.disc_data(xb)
        chunk = xb.shape[0]
        per_epoch = math.ceil(samples.shape[0] / chunk)
        total = torch.zeros((), device=xb.device)
        for _ in range(self.config.disc_epochs):
            total += phases.disc_epoch(samples, labels, chunk)
        recs["discriminator"].steps += per_epoch * self.config.disc_epochs
        return total / (per_epoch * self.config.disc_epochs)

    def _gen_steps(self, phases: AUVAEPhases, xb: torch.Tensor) -> torch.Tensor:
        total = torch.zeros((), device=xb.device)
        for _ in range(self.config.gen_steps):
            total += phases.gen_step(xb)
        return total / max(self.config.gen_steps, 1)

    # ---- records -------------------------------------------------------------------------
    def _record(self, recs: dict[str, _Record], chunk: int, n: int, epochs: int,
                stopped: bool, best_epoch: int | None, phases: AUVAEPhases) -> None:
        opts = {"autoencoder": phases.opt_ae, "discriminator": phases.opt_disc,
                "generator": phases.opt_gen}
        for key, rec in recs.items():
            result = TrainResult(stage=key, pixels=n, batch_size=chunk,
                                 epochs_run=len(rec.history), steps=rec.steps,
                                 seconds=rec.seconds, stopped_early=stopped,
                                 history=rec.history, terms=rec.terms or {},
                                 epochs_planned=epochs,
                                 best_epoch=best_epoch if key == "autoencoder" else None)
            record = result.as_dict()
            record["learning_rates"] = {g.get("name", str(i)): g.get("initial_lr", g["lr"])
                                        for i, g in enumerate(opts[key].param_groups)}
            if "lr_schedule" in self.fit_info:
                record["final_learning_rates"] = {g.get("name", str(i)): g["lr"]
                                                  for i, g in enumerate(opts[key].param_groups)}
            self.fit_info["stages"][key] = record

    def _reconstruction_check(self, net: AUVAENet, X: torch.Tensor,
                              limit: int = 8192) -> dict[str, float]:
        """RMSE (scene units) of the linear mixture W â and of the network's x̂(â) on the
        first ``limit`` training pixels (spec §10: the two can differ materially)."""
        x = X[:limit]
        with torch.no_grad():
            a, _ = net.latent(x, with_log_var=False)
            lin = torch.sqrt(torch.square(net.linear(a) - x).mean()) * self.scale
            full = torch.sqrt(torch.square(net.reconstruct_network(a) - x).mean()) * self.scale
        return {"linear_w_a": round(float(lin), 6), "network_x_hat": round(float(full), 6)}
