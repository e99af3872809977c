"""A fitted model on disk without pickle: what ``hsu-geo batch --train-on`` shares across scenes.

Deep models are stored as the weights-only checkpoint of ``--save-model``
(:mod:`hsu_geo.unmix.deep.checkpoint`; read with ``torch.load(weights_only=True)``), classical
ones as an ``.npz`` read with ``allow_pickle=False``: endmembers ``(k, L)``, band wavelengths
(nm) and numbers. Either way the rest of the :class:`~hsu_geo.pipeline.FittedModel` (names,
training scene, endmember origin, config, fit info) travels as one JSON string. Loading a file
never executes code, and every field is type- and shape-checked before use.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, is_dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from hsu_geo.errors import ConfigError
from hsu_geo.unmix import MODELS

if TYPE_CHECKING:
    from hsu_geo.pipeline import FittedModel

FORMAT = "hsu-geo-fitted-model"
VERSION = 1
#: the fitted-model fields stored as JSON (the arrays and the unmixer travel separately)
_META = ("model", "names", "trained_on", "endmember_source", "angles_deg", "model_config",
         "device", "hysime_k", "pixel_indices", "sample_pixels", "k_estimate")


def is_deep(model: str) -> bool:
    """Whether ``model`` trains a torch network (stored as a checkpoint, not an npz)."""
    return bool(getattr(MODELS.get(model), "uses_device", False))


def file_name(model: str, stem: str = "trained_model") -> str:
    """``stem.pt`` for deep models, ``stem.npz`` for classical ones."""
    return f"{stem}.pt" if is_deep(model) else f"{stem}.npz"


def _meta(fitted: FittedModel) -> str:
    data = {key: getattr(fitted, key) for key in _META}
    data["angles_deg"] = [None if a is None or not np.isfinite(a) else float(a)
                          for a in fitted.angles_deg]
    return json.dumps({"format": FORMAT, "format_version": VERSION, **data}, default=_plain)


def _plain(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if is_dataclass(value):
        return asdict(value)
    return str(value)


def save_fitted(path: str | os.PathLike[str], fitted: FittedModel) -> Path:
    """Write ``fitted`` to ``path`` (a temporary name, then an atomic rename)."""
    from hsu_geo.write.atomic import atomic_path

    target = Path(path)
    meta = _meta(fitted)
    with atomic_path(target, overwrite=True) as tmp:
        if is_deep(fitted.model):
            import torch

            from hsu_geo.unmix.deep.checkpoint import checkpoint_payload

            payload = checkpoint_payload(fitted.unmixer, fitted.wavelength, fitted.names,
                                         fitted.band)
            payload["fitted_model"] = meta
            torch.save(payload, tmp)
        else:
            with open(tmp, "wb") as fh:
                np.savez(fh, endmembers=np.asarray(fitted.unmixer.endmembers, np.float32),
                         wavelength=np.asarray(fitted.wavelength, np.float64),
                         band=np.asarray(fitted.band, np.int64),
                         fit_info=np.array(json.dumps(fitted.unmixer.fit_info, default=_plain)),
                         meta=np.array(meta))
    return target


def load_fitted(path: str | os.PathLike[str], device: str = "cpu") -> FittedModel:
    """The :class:`~hsu_geo.pipeline.FittedModel` in ``path``; ConfigError if it is not one."""
    p = Path(path)
    if p.suffix == ".pt":
        from hsu_geo.unmix.deep.checkpoint import read_checkpoint

        checkpoint = read_checkpoint(p)
        meta = _parse_meta(p, checkpoint.payload.get("fitted_model"))
        unmixer = checkpoint.build(device)
        wavelength = checkpoint.wavelengths
        band = np.asarray(checkpoint.payload.get("band_numbers") or [], dtype=np.int64)
    else:
        wavelength, band, unmixer, meta = _load_npz(p, device)
    from hsu_geo.pipeline import FittedModel

    return FittedModel(unmixer=unmixer, band=band, wavelength=wavelength,
                       **{k: meta[k] for k in _META if k != "device"}, device=device)


def _fail(path: Path, why: str) -> ConfigError:
    return ConfigError(f"{path}: not a usable hsu-geo fitted model ({why}); delete it to retrain")


def _parse_meta(path: Path, text: Any) -> dict[str, Any]:
    try:
        meta = json.loads(str(text))
    except ValueError:
        raise _fail(path, "metadata is not JSON") from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise _fail(path, "no fitted-model metadata")
    if not isinstance(meta.get("model"), str) or not isinstance(meta.get("names"), list) \
            or not all(isinstance(n, str) for n in meta["names"]):
        raise _fail(path, "bad model name or endmember names")
    meta.setdefault("angles_deg", [None] * len(meta["names"]))
    return {k: meta.get(k) for k in _META}


def _load_npz(path: Path, device: str) -> tuple[np.ndarray, np.ndarray, Any, dict[str, Any]]:
    try:
        with np.load(path, allow_pickle=False) as data:
            arrays = {k: data[k] for k in ("endmembers", "wavelength", "band", "fit_info",
                                           "meta")}
    except (OSError, ValueError, KeyError) as exc:
        raise _fail(path, f"{type(exc).__name__}: {exc}") from None
    meta = _parse_meta(path, arrays["meta"])
    M, wl, band = arrays["endmembers"], arrays["wavelength"], arrays["band"]
    if M.ndim != 2 or M.dtype.kind != "f" or wl.shape != (M.shape[1],) \
            or band.shape != (M.shape[1],) or len(meta["names"]) != M.shape[0]:
        raise _fail(path, f"inconsistent shapes: endmembers {M.shape}, {wl.size} wavelengths, "
                          f"{band.size} band numbers, {len(meta['names'])} names")
    cls = MODELS.get(meta["model"])
    from hsu_geo.unmix.base import make_config

    try:
        config = cls.Config(**(meta["model_config"] or {})) if meta["model_config"] else \
            make_config(cls.Config, {})
    except TypeError as exc:
        raise _fail(path, f"model config: {exc}") from None
    unmixer = cls(config, device=device)
    unmixer.endmembers = np.asarray(M, np.float32)
    try:
        unmixer.fit_info = json.loads(str(arrays["fit_info"]))
    except ValueError:
        unmixer.fit_info = {}
    restore = getattr(unmixer, "restore_fit_info", None)
    if restore is not None:  # decisions of the fit that live in fit_info (nonlinear gate)
        restore()
    return np.asarray(wl, np.float64), np.asarray(band, np.int64), unmixer, meta
