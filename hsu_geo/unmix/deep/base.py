"""The deep :class:`Unmixer` base: data preparation, seeding, device, stages, inference,
pickling as a state dict.

A deep model supplies a network (``build_network``) with ``encode(x (b, L)) -> a (b, k)``,
``decode(a) -> x̂ (b, L)`` and ``endmember_weight() -> (L, k)``, its loss and its
optimiser groups, and a ``_fit_stages`` that chains :meth:`DeepUnmixer.run_stage` calls. Pixels
are scaled to [0, 1] by the global maximum of the training sample; endmembers and
reconstructions are reported in the scene's units.
"""

from __future__ import annotations

import threading
import time
import uuid
from abc import abstractmethod
from collections import OrderedDict
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from typing import Any, ClassVar

import numpy as np
import torch
from torch import nn

from hsu_geo.errors import ConfigError, DeviceError, EndmemberError, InvalidSceneError
from hsu_geo.unmix.base import Unmixer
from hsu_geo.unmix.deep._training import (
    DETERMINISM,
    LossFn,
    ProgressFn,
    TrainResult,
    TrainSettings,
    deterministic,
    make_optimizer,
    torch_threads,
    train,
)
from hsu_geo.unmix.deep.losses import mse_mean


@dataclass(frozen=True)
class DeepConfig:
    """Settings every deep model has (models redeclare them with their paper's defaults).

    ``seed`` (filled from ``--seed``), ``epochs``, ``min_steps`` (the main training stage runs
    at least this many optimiser steps, rounded up to whole epochs, so a small scene — few
    batches per epoch — is still trained; 0 = exactly ``epochs``, the papers' budgets),
    ``batch_size`` (pixels), ``drop_last`` (leave out the short last batch of each epoch),
    ``lr_encoder`` / ``lr_decoder`` (per module), ``adam_betas`` / ``adam_eps`` (Adam's
    constants), ``weight_decay`` (L2 in the optimiser), ``decay_endmembers`` (apply
    ``weight_decay`` to the endmember matrix too; off: the decay would pull the endmembers
    towards 0, and no seed paper states it), ``keep_best`` (restore the parameters of the main
    stage's lowest-loss epoch), ``shuffle`` (every epoch), ``early_stop_patience``
    (epochs without a relative improvement of ``early_stop_min_delta``;
    0 = train all epochs), ``max_train_pixels`` (0 = the whole sample), ``infer_batch``
    (pixels per forward pass at inference; 0 = 4096 on CPU, where small batches stay in cache,
    65536 on CUDA), ``threads`` (torch CPU threads while training;
    0 = torch's default of all cores — 1 is robust on shared machines; inference always uses
    one thread per dask task since dask runs blocks in parallel), ``precision`` (``fp32``;
    ``tf32``: TF32 matmuls and convolutions on CUDA — no effect on CPU; ``bf16``: autocast to
    bfloat16, for inference and training; see :meth:`DeepUnmixer.precision_scope`),
    ``deterministic`` training kernels (``warn``: requested, warn-only where CUDA has none;
    ``strict``: refuse such an op; ``off``: not requested; see
    :func:`~hsu_geo.unmix.deep._training.deterministic`),
    ``lr_schedule`` of the main stage (``none``; ``step``: learning rates times ``lr_gamma``
    every ``lr_step`` epochs, torch's StepLR; ``cosine``: cosine annealing to 0 over the
    planned epochs).
    """

    seed: int = 0
    epochs: int = 40
    min_steps: int = 0
    batch_size: int = 1024
    drop_last: bool = False
    lr_encoder: float = 1e-3
    lr_decoder: float = 1e-5
    adam_betas: tuple[float, float] = (0.9, 0.999)
    adam_eps: float = 1e-8
    weight_decay: float = 1e-5
    decay_endmembers: bool = False
    keep_best: bool = False
    shuffle: bool = True
    early_stop_patience: int = 0
    early_stop_min_delta: float = 1e-4
    max_train_pixels: int = 0
    infer_batch: int = 0
    threads: int = 1
    precision: str = "fp32"
    deterministic: str = "warn"
    lr_schedule: str = "none"
    lr_step: int = 100
    lr_gamma: float = 0.9

    def __post_init__(self) -> None:
        check_choice("precision", self.precision, PRECISIONS)
        check_choice("deterministic", self.deterministic, DETERMINISM)
        check_choice("lr_schedule", self.lr_schedule, ("none", "step", "cosine"))
        if self.lr_step < 1 or not 0 < self.lr_gamma <= 1:
            raise ConfigError(f"settings lr_step={self.lr_step} (>= 1) and lr_gamma="
                              f"{self.lr_gamma} (in (0, 1]) are out of range")
        betas = tuple(self.adam_betas)
        checks = {"epochs": self.epochs >= 0, "batch_size": self.batch_size >= 1,
                  "min_steps": self.min_steps >= 0,
                  "adam_betas": len(betas) == 2 and all(0 <= b < 1 for b in betas),
                  "adam_eps": self.adam_eps > 0,
                  "lr_encoder": self.lr_encoder >= 0, "lr_decoder": self.lr_decoder >= 0,
                  "weight_decay": self.weight_decay >= 0,
                  "early_stop_patience": self.early_stop_patience >= 0,
                  "max_train_pixels": self.max_train_pixels >= 0,
                  "infer_batch": self.infer_batch >= 0, "threads": self.threads >= 0}
        for key, ok in checks.items():
            if not ok:
                raise ConfigError(f"setting {key}={getattr(self, key)!r} is out of range")


#: ``--set precision=...`` values
PRECISIONS = ("fp32", "tf32", "bf16")
#: fitted networks kept per process, keyed by (model token, device): dask workers unpickle a
#: model once per task, and this makes every task after the first reuse the built network
NETWORK_CACHE_SIZE = 4
_NETWORK_CACHE: OrderedDict[tuple[str, str], nn.Module] = OrderedDict()
_NETWORK_CACHE_LOCK = threading.Lock()
#: networks built from a state (a counter for tests and benchmarks)
NETWORK_BUILDS = {"count": 0}


def check_choice(key: str, value: str, choices: tuple[str, ...]) -> None:
    """ConfigError unless ``value`` is one of ``choices``."""
    if value not in choices:
        raise ConfigError(f"setting {key}={value!r}: choose one of {', '.join(choices)}")


class DeepUnmixer(Unmixer):
    """Base of torch models. After ``fit``: ``endmembers (k, L)`` in scene units,
    ``fit_info`` with per-stage times, sample sizes and losses, ``scale`` (pixels are divided
    by it before the network)."""

    Config: ClassVar[type] = DeepConfig
    uses_device: ClassVar[bool] = True

    def __init__(self, config: Any = None, device: str = "cpu") -> None:
        super().__init__(config, device)
        self.progress: ProgressFn | None = None
        self.scale: float = 1.0
        self.n_bands: int | None = None
        self.k: int | None = None
        self.network: nn.Module | None = None
        #: what the user asked for (``auto`` is resolved again on every dask worker)
        self.device_request: str = device
        #: identity of the fitted weights (per-process network cache key)
        self.token: str | None = None

    # ---- what a model supplies -------------------------------------------------------
    @abstractmethod
    def build_network(self, n_bands: int, k: int) -> nn.Module:
        """A fresh network for ``n_bands`` bands and ``k`` endmembers (built on CPU)."""

    @abstractmethod
    def _fit_stages(self, net: nn.Module, X: torch.Tensor, M0: np.ndarray) -> None:
        """Train ``net`` on scaled pixels ``X (N, L)`` (on the device) from scaled initial
        endmembers ``M0 (k, L)``; record stages with :meth:`run_stage`."""

    # ---- fitting -----------------------------------------------------------------------
    @property
    def torch_device(self) -> torch.device:
        return torch.device(self.device)

    def _check_device(self) -> None:
        if self.torch_device.type == "cuda" and not torch.cuda.is_available():
            raise DeviceError(f"model placed on {self.device} but no CUDA device is available "
                              "here; use --device auto or --device cpu")

    def new_network(self, n_bands: int, k: int) -> nn.Module:
        """Build the network with the config's seed (torch's global RNG is left untouched)
        and move it to the device."""
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(self.config.seed)
            net = self.build_network(n_bands, k)
        return self.place(net)

    def fit(self, Y: np.ndarray, M0: np.ndarray) -> None:
        """Fit on pixels ``Y (N, L)`` (rows with NaN/inf are dropped, not trained on) from
        initial endmembers ``M0 (k, L)`` in the same units."""
        self._check_device()
        Y = np.asarray(Y)
        M0 = np.asarray(M0, dtype=np.float64)
        if Y.ndim != 2 or M0.ndim != 2:
            raise InvalidSceneError(f"expected pixels (N, L) and endmembers (k, L); got "
                                    f"{Y.shape} and {M0.shape}")
        if M0.shape[1] != Y.shape[1]:
            raise EndmemberError(f"endmembers have {M0.shape[1]} bands but the pixels have "
                                 f"{Y.shape[1]}; give endmembers on the scene's bands")
        if not np.isfinite(M0).all():
            raise EndmemberError("initial endmembers contain NaN/inf; check the endmember "
                                 "source")
        finite = np.isfinite(Y).all(axis=1)
        Yc = Y[finite]
        if Yc.shape[0] < 2:
            raise InvalidSceneError(f"only {Yc.shape[0]} valid (finite) training pixels; a "
                                    "deep model needs at least 2 — check nodata and bad bands")
        rng = np.random.default_rng(self.config.seed)
        cap = self.config.max_train_pixels
        if cap and Yc.shape[0] > cap:
            Yc = Yc[np.sort(rng.choice(Yc.shape[0], cap, replace=False))]
        scale = float(np.max(Yc))
        if not scale > 0:
            raise InvalidSceneError("training pixels are all <= 0; the deep models need "
                                    "reflectance- or radiance-like positive data")
        self.scale, self.n_bands, self.k = scale, int(Y.shape[1]), int(M0.shape[0])
        t0 = time.perf_counter()
        self.fit_info = {
            "device": self.device, "seed": self.config.seed, "scale": scale,
            "training_pixels": int(Yc.shape[0]), "nonfinite_pixels_dropped": int((~finite).sum()),
            "bands": self.n_bands, "endmembers": self.k, "threads": self.config.threads,
            "stages": {},
        }
        with deterministic(self.config.deterministic), torch_threads(self.config.threads):
            net = self.new_network(self.n_bands, self.k)
            X = torch.from_numpy(np.ascontiguousarray(Yc / scale, dtype=np.float32))
            self._fit_stages(net, X.to(self.torch_device), M0 / scale)
        net.eval()
        self.network = net
        self.token = uuid.uuid4().hex
        self.endmembers = self._read_endmembers()
        self.fit_info["seconds"] = round(time.perf_counter() - t0, 3)

    @contextmanager
    def precision_scope(self) -> Iterator[None]:
        """``bf16`` precision: autocast to bfloat16 on the model's device type around a
        forward pass (thread-local, so safe in concurrent dask tasks); other precisions are
        process settings made when the network is placed (:meth:`place`)."""
        if getattr(self.config, "precision", "fp32") == "bf16":
            with torch.autocast(device_type=self.torch_device.type, dtype=torch.bfloat16):
                yield
        else:
            yield

    def place(self, net: nn.Module) -> nn.Module:
        """``net`` moved to the model's device. On CUDA this also sets the process's TF32
        switches from ``precision``: ``tf32`` allows TF32 in matmuls and cuDNN convolutions,
        ``fp32`` forbids it (torch lets cuDNN use TF32 by default); they are process-wide,
        and one hsu-geo process runs one model. CPU has no TF32."""
        if self.torch_device.type == "cuda":
            allow = getattr(self.config, "precision", "fp32") == "tf32"
            torch.backends.cuda.matmul.allow_tf32 = allow
            torch.backends.cudnn.allow_tf32 = allow
        return net.to(self.torch_device)

    def to_device(self, arr: np.ndarray) -> torch.Tensor:
        """Host array -> float32 tensor on the model's device; on CUDA through a pinned
        (page-locked) buffer so the copy is asynchronous."""
        t = torch.from_numpy(np.ascontiguousarray(arr, dtype=np.float32))
        dev = self.torch_device
        if dev.type == "cuda":
            return t.pin_memory().to(dev, non_blocking=True)
        return t

    def run_stage(self, name: str, net: nn.Module, X: torch.Tensor, loss_fn: LossFn,
                  groups: list[dict[str, Any]], settings: TrainSettings, *,
                  optimizer: str = "adam", weight_decay: float = 0.0,
                  after_step: Callable[[], None] | None = None,
                  extra: dict[str, Any] | None = None, schedule: bool = False,
                  before_epoch: Callable[[int, int], None] | None = None) -> TrainResult:
        """Run one training stage through the shared loop and record it in ``fit_info``.
        ``schedule``: apply the config's ``lr_schedule`` (models pass it for their main
        stage); ``before_epoch(epoch, epochs)``: e.g. a loss-weight schedule."""
        cfg = self.config
        opt = make_optimizer(groups, optimizer, weight_decay,
                             betas=tuple(getattr(cfg, "adam_betas", (0.9, 0.999))),
                             eps=getattr(cfg, "adam_eps", 1e-8))
        after_epoch = None
        kind = getattr(cfg, "lr_schedule", "none") if schedule else "none"
        if kind != "none":
            planned = settings.plan(int(X.shape[0]))[2]
            sched: torch.optim.lr_scheduler.LRScheduler = (
                torch.optim.lr_scheduler.StepLR(opt, step_size=cfg.lr_step, gamma=cfg.lr_gamma)
                if kind == "step" else
                torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=max(1, planned)))

            def after_epoch(epoch: int, epochs: int) -> None:
                sched.step()

        with self.precision_scope():
            result = train(net, X, loss_fn, opt, settings, stage=name, progress=self.progress,
                           after_step=after_step, before_epoch=before_epoch,
                           after_epoch=after_epoch)
        record = result.as_dict()
        if kind != "none":
            record["lr_schedule"] = kind
            record["final_learning_rates"] = {g.get("name", str(i)): g["lr"]
                                              for i, g in enumerate(opt.param_groups)}
        record["learning_rates"] = {g.get("name", str(i)): g.get("initial_lr", g["lr"])
                                    for i, g in enumerate(opt.param_groups)}
        record["weight_decays"] = {g.get("name", str(i)): g["weight_decay"]
                                   for i, g in enumerate(opt.param_groups)}
        record.update(extra or {})
        self.fit_info["stages"][name] = record
        return result

    def train_settings(self, epochs: int, batch_size: int, *, patience: int | None = None,
                       shuffle: bool | None = None, target_loss: float = 0.0,
                       seed_offset: int = 0, main: bool = False) -> TrainSettings:
        """TrainSettings from the config (stage seeds differ by ``seed_offset``); ``main``: the
        model's main stage, which also takes the config's ``min_steps`` and ``keep_best``."""
        cfg = self.config
        return TrainSettings(
            epochs=epochs, batch_size=batch_size,
            shuffle=cfg.shuffle if shuffle is None else shuffle,
            patience=cfg.early_stop_patience if patience is None else patience,
            min_delta=cfg.early_stop_min_delta, target_loss=target_loss,
            seed=cfg.seed * 7919 + seed_offset,
            min_steps=getattr(cfg, "min_steps", 0) if main else 0,
            drop_last=getattr(cfg, "drop_last", False),
            keep_best=getattr(cfg, "keep_best", False) and main)

    def decoder_groups(self, endmembers: list[nn.Parameter], rest: list[nn.Parameter],
                       lr: float) -> list[dict[str, Any]]:
        """Optimiser groups of a decoder at ``lr``: the endmember matrix (weight decay only
        with ``decay_endmembers``) and the ``rest`` (the config's ``weight_decay``)."""
        cfg = self.config
        groups = [{"params": endmembers, "lr": lr, "name": "endmembers",
                   "weight_decay": cfg.weight_decay if cfg.decay_endmembers else 0.0}]
        if rest:
            groups.append({"params": rest, "lr": lr, "name": "nonlinear",
                           "weight_decay": cfg.weight_decay})
        return groups

    def pretrain_nonlinear(self, net: nn.Module, X: torch.Tensor) -> None:
        """Decoder pretraining (NAE scheme): fit ``net.restore(x) ≈ x`` (MSE) on
        ``pretrain_pixels`` observed pixels, full batch, Adam at ``pretrain_lr`` for up to
        ``pretrain_steps`` steps; stops at MSE ``pretrain_tol`` or after ``pretrain_patience``
        steps without progress. Only ``net.nonlinear`` is trained."""
        cfg = self.config
        if cfg.pretrain_steps == 0:
            return
        n = min(cfg.pretrain_pixels, X.shape[0])
        pick = np.sort(np.random.default_rng([cfg.seed, 1]).choice(X.shape[0], n,
                                                                   replace=False))
        Xp = X[torch.from_numpy(pick).to(X.device)]
        self.run_stage(
            "decoder_pretrain", net, Xp, lambda xb: (mse_mean(net.restore(xb), xb), {}),
            [{"params": list(net.nonlinear.parameters()), "lr": cfg.pretrain_lr,
              "name": "nonlinear"}],
            self.train_settings(cfg.pretrain_steps, n, shuffle=False,
                                patience=cfg.pretrain_patience, target_loss=cfg.pretrain_tol,
                                seed_offset=1),
            weight_decay=cfg.weight_decay)

    # ---- read-out and inference --------------------------------------------------------
    def match_to_start(self, net: nn.Module, M0: np.ndarray) -> None:
        """Order the learned endmembers (``net.endmember_weight()``, ``(L, k)``) like the start
        ``M0 (k, L)`` (Hungarian on SAD) through the network's ``perm`` buffer, so names follow
        the closest start spectra; the order and SADs go to ``fit_info["matched_to_m0"]``."""
        from hsu_geo.unmix.metrics import match_endmembers, sad

        learned = net.endmember_weight().detach().cpu().numpy().T  # (k, L)
        perm = match_endmembers(M0, learned)
        with torch.no_grad():
            net.perm.copy_(torch.from_numpy(np.asarray(perm, dtype=np.int64)))
        self.fit_info["matched_to_m0"] = {
            "order": [int(p) for p in perm],
            "sad_rad": [round(float(v), 5) for v in sad(M0, learned[perm])]}

    def _read_endmembers(self) -> np.ndarray:
        W = self.network.endmember_weight().detach().cpu().numpy().astype(np.float64)
        return (W.T * self.scale).astype(np.float32)

    def _require_network(self) -> nn.Module:
        if self.network is None:
            raise InvalidSceneError(f"{self.name}: the model is not fitted; fit it or load a "
                                    "checkpoint first")
        return self.network

    def _batched(self, arr: np.ndarray, width: int, fn: Callable[[torch.Tensor], torch.Tensor],
                 out_width: int) -> np.ndarray:
        """Apply ``fn`` to ``arr (N, width)`` in batches of ``infer_batch`` rows on the device;
        returns ``(N, out_width)`` float32 on the host."""
        arr = np.asarray(arr)
        if arr.ndim != 2 or arr.shape[1] != width:
            raise InvalidSceneError(f"{self.name}: expected an (N, {width}) array, got "
                                    f"{arr.shape}; the model was trained on another band set "
                                    "or endmember count")
        out = np.empty((arr.shape[0], out_width), dtype=np.float32)
        dev = self.torch_device
        step = self.config.infer_batch or (4096 if dev.type == "cpu" else 65536)
        with torch.inference_mode(), torch_threads(1 if dev.type == "cpu" else 0), \
                self.precision_scope():
            for start in range(0, arr.shape[0], step):
                res = fn(self.to_device(arr[start:start + step]))
                out[start:start + res.shape[0]] = res.float().cpu().numpy()
        return out

    def abundances(self, Y: np.ndarray) -> np.ndarray:
        """Abundances ``(N, k)`` float32 of finite pixels ``Y (N, L)`` (encoder pass)."""
        net = self._require_network()
        inv = 1.0 / self.scale
        return self._batched(Y, self.n_bands, lambda x: net.encode(x * inv), self.k)

    def reconstruct(self, A: np.ndarray) -> np.ndarray:
        """Decoded spectra ``(N, L)`` float32 in scene units of abundances ``A (N, k)``."""
        net = self._require_network()
        scale = self.scale
        return self._batched(A, self.k, lambda a: net.decode(a) * scale, self.n_bands)

    # ---- state (pickling into dask graphs, checkpoints) ------------------------------------
    def state(self) -> dict[str, Any]:
        """Everything needed to rebuild the fitted model: config dict, CPU state dict, shape,
        scale, endmembers and fit_info."""
        net = self._require_network()
        return {"model": self.name, "config": asdict(self.config),
                "state_dict": {k: v.detach().cpu().clone() for k, v in
                               net.state_dict().items()},
                "n_bands": self.n_bands, "k": self.k, "scale": self.scale,
                "endmembers": torch.from_numpy(np.asarray(self.endmembers, np.float32)),
                "fit_info": self.fit_info}

    def load_state(self, state: dict[str, Any]) -> None:
        """Rebuild the network from :meth:`state` output on this unmixer's device."""
        self._check_device()
        self.n_bands, self.k = int(state["n_bands"]), int(state["k"])
        self.scale = float(state["scale"])
        net = self.build_network(self.n_bands, self.k)
        net.load_state_dict(state["state_dict"])
        NETWORK_BUILDS["count"] += 1
        self.network = self.place(net).eval()
        self.endmembers = state["endmembers"].cpu().numpy().astype(np.float32)
        self.fit_info = dict(state.get("fit_info") or {})
        self.token = uuid.uuid4().hex  # new weights: never reuse another model's cache entry

    def __getstate__(self) -> dict[str, Any]:
        if self.network is not None and not getattr(self, "token", None):
            self.token = uuid.uuid4().hex  # a model fitted by a subclass's own fit
        d = {k: v for k, v in self.__dict__.items() if k not in ("network", "progress")}
        d["_state"] = self.state() if self.network is not None else None
        return d

    def __setstate__(self, d: dict[str, Any]) -> None:
        """Unpickling (a dask worker receiving the model): ``--device auto`` is resolved here,
        on the worker, and the network is built once per process and device, then reused
        from a small cache by every later task (keyed by the fitted weights' token, which
        ``fit`` and ``load_state`` renew). Copies unpickled in one process share that network:
        change weights by ``fit`` or ``load_state``, never in place."""
        state = d.pop("_state", None)
        self.__dict__.update(d)
        self.network, self.progress = None, None
        request = getattr(self, "device_request", self.device)
        if request == "auto":
            from hsu_geo.unmix.device import resolve_device

            self.device = resolve_device("auto")
        if state is None:
            return
        key = (self.token, self.device) if getattr(self, "token", None) else None
        with _NETWORK_CACHE_LOCK:
            cached = _NETWORK_CACHE.get(key) if key else None
            if cached is not None:
                _NETWORK_CACHE.move_to_end(key)
        if cached is None:
            self.load_state(state)
            self.token = key[0] if key else self.token  # the sender's weights, same token
            if key:
                with _NETWORK_CACHE_LOCK:
                    _NETWORK_CACHE[key] = self.network
                    while len(_NETWORK_CACHE) > NETWORK_CACHE_SIZE:
                        _NETWORK_CACHE.popitem(last=False)
            return
        self.n_bands, self.k = int(state["n_bands"]), int(state["k"])
        self.scale = float(state["scale"])
        self.network = cached
        self.endmembers = state["endmembers"].cpu().numpy().astype(np.float32)
        self.fit_info = dict(state.get("fit_info") or {})
