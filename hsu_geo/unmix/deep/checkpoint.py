"""Model checkpoints for ``--save-model`` / ``--load-model``.

A checkpoint is one ``torch.save`` file of plain data (loadable with ``weights_only=True``):
format tag and version, model name, config dict, CPU state dict, band count, endmember count,
input scale, endmembers ``(k, L)`` in scene units, band wavelengths (nm) and band numbers,
endmember names, the training ``fit_info``, the hsu-geo version, and the model's input kind,
halo and the shape of every weight tensor (``shapes``: checked against the file's tensors
when reading, and against the network the config builds before loading, so a mismatch names
the tensor). Loading onto a scene whose bands differ (count, or any centre by more than 0.5
nm) is a :class:`ConfigError`.
"""

from __future__ import annotations

import os
import secrets
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

import numpy as np
import torch

from hsu_geo.errors import ConfigError, OutputError
from hsu_geo.safe_io import CHECKPOINT_LIMIT, check_regular_file
from hsu_geo.unmix.deep.base import DeepUnmixer

FORMAT = "hsu-geo-deep-model"
VERSION = 1
#: largest allowed difference (nm) between a checkpoint's and a scene's band centres
BAND_TOLERANCE_NM = 0.5


def config_from_dict(config_cls: type, data: dict[str, Any]) -> Any:
    """Rebuild a frozen Config from its ``asdict`` form (lists back to tuples); unknown keys
    are a ConfigError."""
    valid = {f.name: f for f in fields(config_cls)}
    unknown = sorted(set(data) - set(valid))
    if unknown:
        raise ConfigError(f"checkpoint config has unknown key(s) {', '.join(unknown)}; it was "
                          "written by another hsu-geo version — retrain without --load-model")
    defaults = config_cls()
    kwargs = {k: tuple(v) if isinstance(getattr(defaults, k), tuple) else v
              for k, v in data.items()}
    return config_cls(**kwargs)


@dataclass
class Checkpoint:
    """A checkpoint read from ``path``: ``payload`` is the saved dict."""

    path: Path
    payload: dict[str, Any]

    @property
    def model(self) -> str:
        return str(self.payload["model"])

    @property
    def wavelengths(self) -> np.ndarray:
        return np.asarray(self.payload["wavelengths"], dtype=np.float64)

    @property
    def endmember_names(self) -> list[str]:
        return [str(n) for n in self.payload["endmember_names"]]

    @property
    def endmembers(self) -> np.ndarray:
        return self.payload["endmembers"].cpu().numpy().astype(np.float32)

    def check_bands(self, wavelengths: np.ndarray) -> None:
        """ConfigError unless ``wavelengths`` (nm) match the training bands: same count and
        every centre within 0.5 nm."""
        mine, theirs = self.wavelengths, np.asarray(wavelengths, dtype=np.float64)
        fix = ("unmix a scene of the same sensor with the same --drop-bands/--keep-bands as "
               "at training, or retrain without --load-model")
        if mine.size != theirs.size:
            raise ConfigError(
                f"{self.path.name} was trained on {mine.size} bands ({mine.min():.1f}-"
                f"{mine.max():.1f} nm) but the scene has {theirs.size} usable bands "
                f"({theirs.min():.1f}-{theirs.max():.1f} nm); {fix}")
        diff = np.abs(mine - theirs)
        if not np.all(diff <= BAND_TOLERANCE_NM):
            i = int(np.nanargmax(np.where(np.isfinite(diff), diff, np.inf)))
            raise ConfigError(
                f"{self.path.name}: band {i + 1} is at {theirs[i]:.2f} nm in the scene but "
                f"{mine[i]:.2f} nm in the model (tolerance {BAND_TOLERANCE_NM} nm); {fix}")

    def config(self) -> Any:
        """The model's Config object."""
        from hsu_geo.unmix import MODELS

        return config_from_dict(MODELS.get(self.model).Config, self.payload["config"])

    def build(self, device: str = "cpu") -> DeepUnmixer:
        """The fitted unmixer, with its network on ``device``."""
        from hsu_geo.unmix import MODELS

        cls = MODELS.get(self.model)
        try:
            config = self.config()
        except (TypeError, ValueError) as exc:
            raise ConfigError(f"--load-model {self.path}: the model config does not fit "
                              f"{self.model} ({exc}); retrain without --load-model") from None
        unmixer = cls(config, device=device)
        shapes = self.payload.get("shapes")
        if shapes is not None:
            expected = {key: list(v.shape) for key, v in unmixer.build_network(
                int(self.payload["n_bands"]), int(self.payload["k"])).state_dict().items()}
            wrong = sorted(key for key in set(expected) | set(shapes)
                           if expected.get(key) != shapes.get(key))
            if wrong:
                key = wrong[0]
                raise ConfigError(
                    f"--load-model {self.path}: weight {key} has shape {shapes.get(key)} but "
                    f"this {self.model} config builds {expected.get(key)} ({len(wrong)} "
                    "tensor(s) differ); the file was written with other settings or another "
                    "version — retrain, or give the original file")
        try:
            unmixer.load_state(self.payload)
        except (RuntimeError, KeyError, TypeError, ValueError) as exc:
            reason = " ".join(str(exc).split())[:200]
            raise ConfigError(f"--load-model {self.path}: the weights do not fit a "
                              f"{self.model} model of {self.payload['n_bands']} bands and "
                              f"{self.payload['k']} endmembers ({reason}); give a file written "
                              "by --save-model, or retrain") from None
        return unmixer


def save_checkpoint(path: str | os.PathLike[str], unmixer: Any, wavelengths: np.ndarray,
                    names: list[str], band_numbers: np.ndarray | None = None) -> Path:
    """Write a fitted deep ``unmixer`` with its band ``wavelengths`` (nm) and endmember
    ``names`` to ``path`` (atomically: temporary file, then rename). Returns the path."""
    payload = checkpoint_payload(unmixer, wavelengths, names, band_numbers)
    target = Path(path)
    if target.is_dir():
        raise OutputError(f"--save-model {target} is a directory; give a file name, e.g. "
                          f"{target / 'model.pt'}")
    tmp = target.with_name(f".{target.name}.part-{secrets.token_hex(4)}")
    try:
        torch.save(payload, tmp)
        os.replace(tmp, target)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise OutputError(f"cannot write --save-model {target} ({exc.strerror or exc}); "
                          "choose a writable location") from exc
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return target


def checkpoint_payload(unmixer: Any, wavelengths: np.ndarray, names: list[str],
                       band_numbers: np.ndarray | None = None) -> dict[str, Any]:
    """The plain-data dict :func:`save_checkpoint` writes (tensors, numbers, strings, lists)."""
    if not isinstance(unmixer, DeepUnmixer):
        raise ConfigError(f"--save-model needs a deep model (cresdae, nae, linear_ae, …); "
                          f"{getattr(unmixer, 'name', type(unmixer).__name__)} has no trained "
                          "weights to save")
    wl = np.asarray(wavelengths, dtype=np.float64)
    if wl.size != unmixer.n_bands:
        raise ConfigError(f"{wl.size} wavelengths for a model of {unmixer.n_bands} bands")
    if len(names) != unmixer.k:
        raise ConfigError(f"{len(names)} endmember names for a model of {unmixer.k} endmembers")
    from hsu_geo import __version__

    payload = unmixer.state()
    payload.update({
        "format": FORMAT, "format_version": VERSION, "hsu_geo_version": __version__,
        "wavelengths": wl.tolist(), "endmember_names": [str(n) for n in names],
        "band_numbers": None if band_numbers is None else
        [int(b) for b in np.asarray(band_numbers).ravel()],
        "input": str(unmixer.input), "halo": int(getattr(unmixer, "halo", 0)),
        "shapes": {key: list(v.shape) for key, v in payload["state_dict"].items()},
    })
    return payload


def read_checkpoint(path: str | os.PathLike[str]) -> Checkpoint:
    """Read a checkpoint written by :func:`save_checkpoint` (CPU tensors, no code executed)."""
    p = Path(path)
    if not p.exists():
        raise ConfigError(f"--load-model {p}: file not found; give a file written by "
                          "--save-model")
    check_regular_file(p, CHECKPOINT_LIMIT, "model checkpoint (--load-model)", ConfigError)
    try:
        payload = torch.load(p, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises many types for foreign files
        raise ConfigError(f"--load-model {p}: not a hsu-geo model checkpoint "
                          f"({type(exc).__name__}); give a file written by --save-model") \
            from None
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise ConfigError(f"--load-model {p}: not a hsu-geo model checkpoint; give a file "
                          "written by --save-model")
    version = payload.get("format_version", 0)
    if not _is_int(version):
        raise ConfigError(f"--load-model {p}: format_version {version!r} is not a number; give "
                          "a file written by --save-model")
    if version > VERSION:
        raise ConfigError(f"--load-model {p}: written by a newer hsu-geo (format "
                          f"{payload['format_version']}); upgrade hsu-geo")
    check_payload(p, payload)
    return Checkpoint(p, payload)


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def check_payload(path: Path, payload: dict[str, Any]) -> None:
    """ConfigError unless every field has the type and shape :func:`save_checkpoint` writes
    and they agree (checked before any network is built: a checkpoint declaring 10^9 bands
    must not allocate 10^9-wide layers)."""
    from hsu_geo.cube import MAX_BANDS
    from hsu_geo.unmix import MODELS

    def bad(what: str) -> ConfigError:
        return ConfigError(f"--load-model {path}: {what}; the file is damaged or not written "
                           "by --save-model: retrain, or give the original file")

    model = payload.get("model")
    if not isinstance(model, str) or model not in MODELS.names():
        raise bad(f"model {model!r} is not an installed deep model")
    if not issubclass(MODELS.get(model), DeepUnmixer):
        raise bad(f"model {model!r} is not a deep model")
    n, k = payload.get("n_bands"), payload.get("k")
    if not _is_int(n) or not 1 <= n <= MAX_BANDS:
        raise bad(f"n_bands {n!r} is not a band count from 1 to {MAX_BANDS}")
    if not _is_int(k) or not 1 <= k <= n:
        raise bad(f"k {k!r} is not an endmember count from 1 to n_bands ({n})")
    scale = payload.get("scale")
    if not isinstance(scale, (int, float)) or isinstance(scale, bool) \
            or not np.isfinite(scale) or scale <= 0:
        raise bad(f"scale {scale!r} is not a positive number")
    if not isinstance(payload.get("config"), dict):
        raise bad("config is not a mapping of settings")
    wl = payload.get("wavelengths")
    if not isinstance(wl, (list, tuple)) or len(wl) != n or not all(
            isinstance(w, (int, float)) and not isinstance(w, bool) and np.isfinite(w)
            for w in wl):
        raise bad(f"wavelengths is not a list of {n} numbers (one per band)")
    names = payload.get("endmember_names")
    if not isinstance(names, (list, tuple)) or len(names) != k \
            or not all(isinstance(x, str) for x in names):
        raise bad(f"endmember_names is not a list of {k} names")
    em = payload.get("endmembers")
    if not isinstance(em, torch.Tensor) or tuple(em.shape) != (k, n) \
            or not em.is_floating_point():
        raise bad(f"endmembers is not a ({k}, {n}) float tensor")
    bands = payload.get("band_numbers")
    if bands is not None and (not isinstance(bands, (list, tuple)) or len(bands) != n
                              or not all(_is_int(b) for b in bands)):
        raise bad(f"band_numbers is not a list of {n} band numbers")
    state = payload.get("state_dict")
    if not isinstance(state, dict) or not all(
            isinstance(key, str) and isinstance(v, torch.Tensor) for key, v in state.items()):
        raise bad("state_dict is not a mapping of tensors")
    info = payload.get("fit_info")
    if info is not None and not isinstance(info, dict):
        raise bad("fit_info is not a mapping")
    shapes = payload.get("shapes")
    if shapes is not None and (not isinstance(shapes, dict) or set(shapes) != set(state) or any(
            list(state[key].shape) != list(shape) for key, shape in shapes.items())):
        raise bad("shapes does not match the state_dict's tensors")
