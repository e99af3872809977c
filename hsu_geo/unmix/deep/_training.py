"""The one training loop every deep model uses.

Mini-batch optimisation of a loss over the rows of a pixel tensor ``X (N, L)`` that already
lives on the training device: per-module learning rates and weight decays (optimiser parameter
groups), a budget in epochs with a floor in optimiser steps (``min_steps``, so a small scene is
not under-trained), batch size (clamped to N), optional ``drop_last``, seeded per-epoch
shuffling, optional early stop on a plateau, optional keep-best (restore the parameters of the
lowest-loss epoch), a progress callback and a loss history for run.json. Deterministic on CPU
for a given seed: shuffling draws from a seeded ``torch.Generator`` and anything random inside
the loss (dropout, noise) from torch's global RNG re-seeded for the stage and restored after.
"""

from __future__ import annotations

import itertools
import math
import os
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from hsu_geo.errors import ConfigError

#: batch -> (loss, {term name: detached scalar tensor})
LossFn = Callable[[torch.Tensor], tuple[torch.Tensor, dict[str, torch.Tensor]]]


@dataclass(frozen=True)
class TrainEvent:
    """Progress report sent after every epoch: ``stage`` name, ``epoch`` (1-based) of
    ``epochs``, mean ``loss`` of the epoch."""

    stage: str
    epoch: int
    epochs: int
    loss: float


ProgressFn = Callable[[TrainEvent], None]


@dataclass(frozen=True)
class TrainSettings:
    """How to iterate.

    ``epochs`` is raised to ``ceil(min_steps / batches per epoch)`` when that is more, so at
    least ``min_steps`` optimiser steps run (rounded up to whole epochs; ``min_steps`` 0 = the
    epochs as given; ``epochs`` 0 trains nothing). ``batch_size`` in pixels, clamped to N.
    ``drop_last``: batches of exactly ``batch_size``, the remainder of each shuffled epoch
    left out (off: near-equal batches covering every pixel). ``shuffle`` every epoch. Early
    stop after ``patience`` epochs (0 = never) without a relative improvement of
    ``min_delta``, or once the epoch loss is at most ``target_loss`` (0 = never).
    ``keep_best``: restore the parameters at the end of the epoch with the lowest mean loss.
    ``seed``: of the shuffling and of torch's RNG inside the stage.
    """

    epochs: int
    batch_size: int
    shuffle: bool = True
    patience: int = 0
    min_delta: float = 1e-4
    target_loss: float = 0.0
    seed: int = 0
    min_steps: int = 0
    drop_last: bool = False
    keep_best: bool = False

    def plan(self, n: int) -> tuple[int, list[tuple[int, int]], int]:
        """``(batch, slices, epochs)`` for ``n`` pixels: the clamped batch size, the batch
        slices of one epoch and the number of epochs that meets the step budget."""
        batch = min(self.batch_size, n)
        slices = _batches(n, batch, self.drop_last)
        epochs = (max(self.epochs, math.ceil(self.min_steps / len(slices))) if self.epochs > 0
                  else 0)
        return batch, slices, epochs


@dataclass
class TrainResult:
    """What one stage did; ``as_dict`` is what goes into run.json."""

    stage: str
    pixels: int
    batch_size: int
    epochs_run: int
    steps: int
    seconds: float
    stopped_early: bool
    history: list[float] = field(default_factory=list)
    terms: dict[str, float] = field(default_factory=dict)
    epochs_planned: int = 0
    best_epoch: int | None = None

    @property
    def final_loss(self) -> float:
        return self.history[-1] if self.history else float("nan")

    def as_dict(self, max_history: int = 200) -> dict[str, Any]:
        hist = self.history
        if len(hist) > max_history:  # long pretraining runs: keep an even subsample + the end
            pick = np.unique(np.linspace(0, len(hist) - 1, max_history).round().astype(int))
            hist = [hist[i] for i in pick]
        extra = {} if self.best_epoch is None else {"restored_best_epoch": self.best_epoch}
        return {"pixels": self.pixels, "batch_size": self.batch_size,
                "epochs_planned": self.epochs_planned,
                "epochs_run": self.epochs_run, "steps": self.steps, **extra,
                "seconds": round(self.seconds, 3), "stopped_early": self.stopped_early,
                "final_loss": _round(self.final_loss),
                "final_terms": {k: _round(v) for k, v in self.terms.items()},
                "loss_history": [_round(v) for v in hist]}


def _round(v: float) -> float | None:
    return float(f"{v:.6g}") if math.isfinite(v) else None


def make_optimizer(groups: Sequence[dict[str, Any]], kind: str = "adam",
                   weight_decay: float = 0.0, betas: tuple[float, float] = (0.9, 0.999),
                   eps: float = 1e-8) -> torch.optim.Optimizer:
    """Adam (or Keras-like RMSprop) over parameter ``groups`` (each ``{"params", "lr",
    "name"}``, optionally its own ``"weight_decay"``), one learning rate per module.
    ``weight_decay`` is the default L2 for groups that do not set one; ``betas`` and ``eps``
    are Adam's (RMSprop keeps Keras' rho 0.9, eps 1e-7)."""
    groups = [g for g in groups if list(g["params"])]
    if kind == "adam":
        return torch.optim.Adam(groups, weight_decay=weight_decay, betas=tuple(betas), eps=eps)
    if kind == "rmsprop":
        return torch.optim.RMSprop(groups, alpha=0.9, eps=1e-7, weight_decay=weight_decay)
    raise ConfigError(f"optimizer {kind!r} is not known; use adam or rmsprop")


#: ``--set deterministic=...`` values (see :func:`deterministic`)
DETERMINISM = ("warn", "strict", "off")


@contextmanager
def deterministic(mode: str = "warn") -> Iterator[None]:
    """Deterministic kernels inside the block, then the caller's setting restored.

    ``mode``: ``warn`` (default) asks torch for deterministic kernels and only warns on the
    CUDA ops that have none; ``strict`` refuses such an op with a one-line
    :class:`~hsu_geo.errors.ConfigError` naming it (torch's own error, made readable);
    ``off`` leaves the caller's setting (CUDA may then pick faster, run-to-run varying
    kernels). With ``warn`` and ``strict`` on CUDA, cuBLAS is deterministic only with a fixed
    workspace: ``CUBLAS_WORKSPACE_CONFIG=:4096:8`` is set unless the user set it (it takes
    effect when cuBLAS starts, i.e. at the process's first CUDA matmul)."""
    if mode not in DETERMINISM:
        raise ConfigError(f"setting deterministic={mode!r}: choose one of "
                          f"{', '.join(DETERMINISM)}")
    if mode == "off":
        yield
        return
    if torch.cuda.is_available():
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    enabled = torch.are_deterministic_algorithms_enabled()
    warn_only = torch.is_deterministic_algorithms_warn_only_enabled()
    torch.use_deterministic_algorithms(True, warn_only=mode == "warn")
    try:
        yield
    except RuntimeError as exc:
        text = str(exc)
        if "does not have a deterministic implementation" not in text:
            raise
        op = text.split(" does not have", 1)[0].strip() or "an operation"
        raise ConfigError(f"setting deterministic=strict: {op} has no deterministic "
                          "implementation on this device; use --set deterministic=warn "
                          "(or off)") from None
    finally:
        torch.use_deterministic_algorithms(enabled, warn_only=warn_only)


@contextmanager
def torch_threads(n: int) -> Iterator[None]:
    """Use ``n`` torch CPU threads in the calling thread inside the block (0 = leave as is).

    torch's intra-op thread count is per OS thread (OpenMP), so this is safe inside
    concurrently running dask tasks; the previous count is restored on exit.
    """
    previous = torch.get_num_threads()
    if n > 0 and n != previous:
        torch.set_num_threads(n)
    try:
        yield
    finally:
        if torch.get_num_threads() != previous:
            torch.set_num_threads(previous)


def _batches(n: int, batch_size: int, drop_last: bool = False) -> list[tuple[int, int]]:
    """Near-equal contiguous slices of ``range(n)`` of at most ``batch_size`` (never a batch
    of one pixel when n > 1, which batch-norm layers cannot train on); with ``drop_last``,
    ``n // batch_size`` slices of exactly ``batch_size`` (the rest is left out)."""
    if drop_last:
        return [(i * batch_size, (i + 1) * batch_size) for i in range(max(1, n // batch_size))]
    count = max(1, math.ceil(n / batch_size))
    edges = np.linspace(0, n, count + 1).round().astype(int)
    return [(int(a), int(b)) for a, b in itertools.pairwise(edges) if b > a]


def train(
    module: torch.nn.Module,
    X: torch.Tensor,
    loss_fn: LossFn,
    optimizer: torch.optim.Optimizer,
    settings: TrainSettings,
    *,
    stage: str,
    progress: ProgressFn | None = None,
    after_step: Callable[[], None] | None = None,
    before_epoch: Callable[[int, int], None] | None = None,
    after_epoch: Callable[[int, int], None] | None = None,
) -> TrainResult:
    """Minimise ``loss_fn`` over the rows of ``X (N, L)``.

    ``after_step`` runs after every optimiser step (e.g. a non-negativity projection);
    ``before_epoch(epoch, epochs)`` / ``after_epoch(epoch, epochs)`` (0-based epoch of the
    planned count) before and after each epoch (loss-weight schedules, LR schedulers). A
    non-finite epoch loss is a :class:`ConfigError` naming the learning rates. Torch's global
    RNG (dropout) is seeded from ``settings.seed`` inside the stage and restored afterwards.
    """
    n = int(X.shape[0])
    if n == 0:
        raise ConfigError(f"{stage}: no training pixels")
    if settings.epochs < 0 or settings.batch_size < 1 or settings.min_steps < 0:
        raise ConfigError(f"{stage}: epochs and min_steps must be >= 0 and batch_size >= 1")
    batch, slices, epochs = settings.plan(n)
    used = slices[-1][1] - slices[0][0]  # pixels seen per epoch (< n with drop_last)
    gen = torch.Generator().manual_seed(int(settings.seed))
    devices = [X.device.index or 0] if X.device.type == "cuda" else []
    history: list[float] = []
    terms: dict[str, float] = {}
    best, stale, stopped, steps = math.inf, 0, False, 0
    kept: tuple[float, int, dict[str, torch.Tensor]] | None = None
    t0 = time.perf_counter()
    module.train()
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(int(settings.seed) + 1)
        for epoch in range(epochs):
            order = (torch.randperm(n, generator=gen).to(X.device) if settings.shuffle
                     else None)
            total = torch.zeros((), device=X.device)
            sums: dict[str, torch.Tensor] = {}
            if before_epoch is not None:
                before_epoch(epoch, epochs)
            for start, stop in slices:
                xb = X[order[start:stop]] if order is not None else X[start:stop]
                optimizer.zero_grad(set_to_none=True)
                loss, parts = loss_fn(xb)
                loss.backward()
                optimizer.step()
                if after_step is not None:
                    after_step()
                steps += 1
                weight = (stop - start) / used
                total += loss.detach() * weight
                for key, value in parts.items():
                    sums[key] = sums.get(key, 0.0) + value.detach() * weight
            epoch_loss = float(total)  # one device sync per epoch
            if not math.isfinite(epoch_loss):
                raise ConfigError(
                    f"{stage}: training diverged (loss {epoch_loss} at epoch {epoch + 1}); "
                    "lower the learning rates, e.g. --set lr_encoder=1e-4")
            history.append(epoch_loss)
            terms = {k: float(v) for k, v in sums.items()}
            if after_epoch is not None:
                after_epoch(epoch, epochs)
            if settings.keep_best and (kept is None or epoch_loss < kept[0]):
                kept = (epoch_loss, epoch + 1,
                        {k: v.detach().clone() for k, v in module.state_dict().items()})
            if progress is not None:
                progress(TrainEvent(stage, epoch + 1, epochs, epoch_loss))
            if settings.target_loss > 0 and epoch_loss <= settings.target_loss:
                stopped = epoch + 1 < epochs
                break
            if settings.patience > 0:
                if epoch_loss < best - settings.min_delta * abs(best if math.isfinite(best)
                                                                else 0):
                    best, stale = epoch_loss, 0
                else:
                    stale += 1
                    if stale >= settings.patience:
                        stopped = True
                        break
    best_epoch = None
    if kept is not None:
        module.load_state_dict(kept[2])
        best_epoch = kept[1]
    module.eval()
    return TrainResult(stage=stage, pixels=n, batch_size=batch, epochs_run=len(history),
                       steps=steps, seconds=time.perf_counter() - t0, stopped_early=stopped,
                       history=history, terms=terms, epochs_planned=epochs,
                       best_epoch=best_epoch)
