"""Base of deep models that train on patches and infer on image blocks (``input =
"patches"``), on top of :class:`hsu_geo.unmix.deep.base.DeepUnmixer`.

The network works on images: ``encode(x (b, L, H, W)) -> a (b, k, H - 2e, W - 2e)`` and
``decode(a) -> x̂ (b, L, H - 2e - 2r, W - 2e - 2r)`` with *valid* (unpadded) convolutions,
where ``e`` and ``r`` are the encoder's and decoder's receptive-field radii; the model's
``halo`` is ``e + r``. Unpadded convolutions make a block's interior independent of how the
scene was cut: the engine (:mod:`hsu_geo.unmix.spatial`) supplies the halo (true neighbours, or
reflected pixels at the scene edge).

Training (``fit(P (n, L, p, p), M0 (k, L))``): nodata pixels (any band non-finite) are filled
with ``fill_spectrum`` — the mean spectrum of the valid training pixels, kept with the model
and used again at inference — and left out of the loss, which covers the ``p - 2 halo``
interior of each patch (the only pixels whose whole receptive field lies in the patch). The
valid mask travels as an extra channel of the training tensor, so the shared loop
(:func:`hsu_geo.unmix.deep._training.train`) batches patches like pixel rows.
"""

from __future__ import annotations

import time
import uuid
from abc import abstractmethod
from typing import Any, ClassVar

import numpy as np
import torch
from torch import nn
from torch.nn import functional

from hsu_geo.errors import EndmemberError, InvalidSceneError
from hsu_geo.unmix.deep._training import deterministic, torch_threads
from hsu_geo.unmix.deep.base import DeepUnmixer


class PatchDeepUnmixer(DeepUnmixer):
    """Deep model on patches. Subclasses set ``encoder_radius`` / ``decoder_radius`` (from
    their config in ``__init__``) and implement ``build_network`` and ``_fit_stages`` (which
    receives ``X (n, L + 1, p, p)``: scaled, filled spectra plus the valid mask)."""

    input: ClassVar[str] = "patches"

    def __init__(self, config: Any = None, device: str = "cpu") -> None:
        super().__init__(config, device)
        self.fill_spectrum: np.ndarray | None = None  # (L,) scene units
        self.encoder_radius, self.decoder_radius = self.radii()
        self.halo = self.encoder_radius + self.decoder_radius

    @abstractmethod
    def radii(self) -> tuple[int, int]:
        """Receptive-field radii (pixels) of the encoder and of the decoder."""

    def hidden_width(self, n_bands: int, k: int) -> int:
        """Widest per-pixel activation of the network (float32 values held per pixel besides
        the input), the ``F`` of the memory formula of :mod:`hsu_geo.unmix.spatial`. Default:
        the ``features`` setting (CNNAEU's encoder width, 48)."""
        return int(getattr(self.config, "features", 48))

    # ---- fitting -----------------------------------------------------------------------
    def fit(self, Y: np.ndarray, M0: np.ndarray) -> None:
        """Fit on patches ``Y (n, L, p, p)`` (NaN = nodata) from endmembers ``M0 (k, L)``."""
        self._check_device()
        P = np.asarray(Y)
        M0 = np.asarray(M0, dtype=np.float64)
        if P.ndim != 4 or M0.ndim != 2:
            raise InvalidSceneError(f"{self.name} trains on patches (n, L, p, p) from endmembers "
                                    f"(k, L); got {P.shape} and {M0.shape}")
        n, L, ph, pw = P.shape
        if M0.shape[1] != L:
            raise EndmemberError(f"endmembers have {M0.shape[1]} bands but the patches have "
                                 f"{L}; give endmembers on the scene's bands")
        if not np.isfinite(M0).all():
            raise EndmemberError("initial endmembers contain NaN/inf; check the endmember "
                                 "source")
        need = 2 * self.halo + 1
        if min(ph, pw) < need:
            raise InvalidSceneError(
                f"{self.name} needs patches (and a scene) of at least {need} x {need} pixels "
                f"(its receptive field); got {ph} x {pw} — unmix a larger scene or use a "
                "per-pixel model (e.g. -m fcls)")
        valid = np.isfinite(P).all(axis=1)  # (n, p, p)
        d = self.halo
        inner = valid[:, d:ph - d, d:pw - d]
        if inner.sum() < 2:
            raise InvalidSceneError(f"{self.name}: the training patches have {int(inner.sum())}"
                                    " valid pixels away from their borders; check nodata")
        Pv = P.transpose(1, 0, 2, 3)[:, valid]  # (L, valid pixels)
        fill = Pv.mean(axis=1, dtype=np.float64)  # (L,)
        scale = float(Pv.max())
        del Pv
        if not scale > 0:
            raise InvalidSceneError("training pixels are all <= 0; the deep models need "
                                    "reflectance- or radiance-like positive data")
        self.fill_spectrum = fill.astype(np.float32)
        self.scale, self.n_bands, self.k = scale, int(L), int(M0.shape[0])
        X = np.empty((n, L + 1, ph, pw), dtype=np.float32)
        X[:, :L] = np.where(valid[:, None], P, fill[None, :, None, None]) / scale
        X[:, L] = valid
        t0 = time.perf_counter()
        self.fit_info = {
            "device": self.device, "seed": self.config.seed, "scale": scale,
            "input": self.input, "halo": self.halo, "patches": int(n),
            "patch_size": [int(ph), int(pw)], "training_pixels": int(inner.sum()),
            "nonfinite_pixels_filled": int((~valid).sum()), "bands": self.n_bands,
            "endmembers": self.k, "threads": self.config.threads, "stages": {},
        }
        with deterministic(self.config.deterministic), torch_threads(self.config.threads), \
                torch.random.fork_rng(devices=[]):
            net = self.new_network(self.n_bands, self.k)
            torch.manual_seed(self.config.seed * 7919 + 11)  # dropout masks: seeded
            self._fit_stages(net, torch.from_numpy(X).to(self.torch_device), M0 / scale)
        net.eval()
        self.network = net
        self.token = uuid.uuid4().hex
        self.endmembers = self._read_endmembers()
        self.fit_info["seconds"] = round(time.perf_counter() - t0, 3)

    def split(self, xb: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Training batch ``(b, L + 1, p, p)`` -> spectra ``(b, L, p, p)`` and the valid mask
        of the loss region ``(b, p - 2 halo, p - 2 halo)``."""
        d = self.halo
        x, mask = xb[:, :-1], xb[:, -1]
        return x, mask[:, d:mask.shape[1] - d, d:mask.shape[2] - d]

    def crop(self, x: torch.Tensor, r: int) -> torch.Tensor:
        """``x (b, c, H, W)`` without ``r`` pixels on each side."""
        return x[:, :, r:x.shape[2] - r, r:x.shape[3] - r] if r else x

    # ---- inference -------------------------------------------------------------------------
    def abundances(self, Y: np.ndarray) -> np.ndarray:
        """Abundances ``(N, k)`` of single pixels ``Y (N, L)``, each taken as a homogeneous
        neighbourhood (the pixel replicated over the receptive field)."""
        net = self._require_network()
        inv, e = 1.0 / self.scale, self.encoder_radius

        def fn(x: torch.Tensor) -> torch.Tensor:
            img = x[:, :, None, None] * inv
            if e:
                img = functional.pad(img, (e, e, e, e), mode="replicate")
            return net.encode(img)[:, :, 0, 0]

        return self._batched(Y, self.n_bands, fn, self.k)

    def reconstruct(self, A: np.ndarray) -> np.ndarray:
        """Decoded spectra ``(N, L)`` of abundances ``A (N, k)`` taken as homogeneous."""
        net = self._require_network()
        scale, r = self.scale, self.decoder_radius

        def fn(a: torch.Tensor) -> torch.Tensor:
            img = a[:, :, None, None]
            if r:
                img = functional.pad(img, (r, r, r, r), mode="replicate")
            return net.decode(img)[:, :, 0, 0] * scale

        return self._batched(A, self.k, fn, self.n_bands)

    def checked_block(self, block: np.ndarray) -> np.ndarray:
        """``block (L, h + 2 halo, w + 2 halo)`` as an array, or InvalidSceneError when its
        bands are not the model's or it has no interior inside the halo."""
        block = np.asarray(block)
        if block.ndim != 3 or block.shape[0] != self.n_bands:
            raise InvalidSceneError(f"{self.name}: expected a ({self.n_bands}, h, w) block, got "
                                    f"{block.shape}; the model was trained on another band set")
        if min(block.shape[1:]) <= 2 * self.halo:
            raise InvalidSceneError(f"{self.name}: a block of {block.shape[1:]} pixels has no "
                                    f"interior inside its {self.halo}-pixel halo")
        return block

    def abundances_image(self, block: np.ndarray, valid: np.ndarray | None = None
                         ) -> tuple[np.ndarray, np.ndarray]:
        """Fused block predict: finite ``block (L, h + 2 halo, w + 2 halo)`` in scene units ->
        abundances ``(k, h, w)`` and reconstruction RMSE ``(h, w)`` (scene units) of the
        interior, computed on the device. ``valid`` is unused (the engine fills and masks)."""
        net = self._require_network()
        block = self.checked_block(block)
        d = self.halo
        dev = self.torch_device
        with torch.inference_mode(), torch_threads(1 if dev.type == "cpu" else 0), \
                self.precision_scope():
            x = self.to_device(block)[None] * (1.0 / self.scale)
            a = net.encode(x)  # (1, k, h + 2r, w + 2r)
            rec = net.decode(a)  # (1, L, h, w)
            diff = rec - self.crop(x, d)
            rmse = torch.sqrt(torch.square(diff).mean(dim=1))[0] * self.scale
            A = self.crop(a, self.decoder_radius)[0]
            return A.float().cpu().numpy(), rmse.float().cpu().numpy()

    # ---- state ---------------------------------------------------------------------------
    def state(self) -> dict[str, Any]:
        state = super().state()
        state["fill_spectrum"] = torch.from_numpy(np.asarray(self.fill_spectrum, np.float32))
        return state

    def load_state(self, state: dict[str, Any]) -> None:
        super().load_state(state)
        fill = state.get("fill_spectrum")
        self.fill_spectrum = None if fill is None else fill.cpu().numpy().astype(np.float32)


def masked_spectral_angle(x_hat: torch.Tensor, x: torch.Tensor, mask: torch.Tensor,
                          eps: float = 1e-8) -> torch.Tensor:
    """Mean spectral angle (rad) between ``x̂, x (b, L, h, w)`` over pixels where ``mask
    (b, h, w)`` is 1 (cosine clamped for a finite gradient)."""
    cos = (x_hat * x).sum(dim=1) / (x_hat.norm(dim=1) * x.norm(dim=1) + eps)
    angle = torch.acos(cos.clamp(-1.0 + 1e-7, 1.0 - 1e-7))
    return (angle * mask).sum() / mask.sum().clamp(min=1.0)


def init_normal(net: nn.Module, std: float) -> None:
    """Every conv weight from N(0, std) (Keras RandomNormal, the CNNAEU code)."""
    for m in net.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.normal_(m.weight, 0.0, std)
