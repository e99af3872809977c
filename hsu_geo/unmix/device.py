"""Resolve ``--device auto|cpu|cuda[:i]`` once, for every model (models never pick one)."""

from __future__ import annotations

import re

from hsu_geo.errors import DeviceError

_PATTERN = re.compile(r"^(auto|cpu|cuda(:\d+)?)$")


def device_for(model_cls: type, spec: str = "auto") -> str:
    """The device a model runs on: resolved for torch models, "cpu" for numpy ones.

    The spec is checked either way; torch is imported only when the model needs it.
    """
    if not _PATTERN.match(spec.strip().lower()):
        raise DeviceError(f"device {spec!r} is not understood; use auto, cpu or cuda[:index]")
    return resolve_device(spec) if getattr(model_cls, "uses_device", False) else "cpu"


def resolve_device(spec: str = "auto") -> str:
    """Return a torch device string: "cpu" or "cuda:i".

    ``auto`` picks CUDA device 0 when torch sees one, else CPU. Asking for CUDA without it is
    a :class:`DeviceError` naming the alternatives.
    """
    spec = spec.strip().lower()
    if not _PATTERN.match(spec):
        raise DeviceError(f"device {spec!r} is not understood; use auto, cpu or cuda[:index]")
    if spec == "cpu":
        return "cpu"
    try:
        import torch
    except ImportError:
        if spec == "auto":
            return "cpu"
        raise DeviceError("--device cuda needs torch with CUDA; use --device auto or cpu") \
            from None
    available = torch.cuda.is_available()
    if spec == "auto":
        return "cuda:0" if available else "cpu"
    if not available:
        raise DeviceError(f"--device {spec}: no CUDA device is available here; use --device "
                          "auto or --device cpu")
    index = int(spec.split(":")[1]) if ":" in spec else 0
    if index >= torch.cuda.device_count():
        raise DeviceError(f"--device {spec}: only {torch.cuda.device_count()} CUDA device(s); "
                          f"use cuda:0..cuda:{torch.cuda.device_count() - 1}")
    return f"cuda:{index}"
