"""Unmixing models and the registry ``MODELS`` (entry-point group ``hsu_geo.models``)."""

from __future__ import annotations

import importlib

from hsu_geo.registry import Registry
from hsu_geo.unmix.base import Unmixer

MODELS: Registry[type[Unmixer]] = Registry("model", group="hsu_geo.models")


def _lazy(module: str, cls: str):
    return lambda: getattr(importlib.import_module(module), cls)


for _name, _cls in (("fcls", "FclsUnmixer"), ("nnls", "NnlsUnmixer"), ("ucls", "UclsUnmixer"),
                    ("scls", "SclsUnmixer")):
    MODELS.register_lazy(_name, _lazy("hsu_geo.unmix.classical.model", _cls))
MODELS.register_lazy("ppnmm", _lazy("hsu_geo.unmix.classical.nonlinear_model", "PpnmmUnmixer"))
MODELS.register_lazy("gbm", _lazy("hsu_geo.unmix.classical.nonlinear_model", "GbmUnmixer"))
MODELS.register_lazy("sunsal", _lazy("hsu_geo.unmix.classical.sunsal", "SunsalUnmixer"))
MODELS.register_lazy("sunsal_tv", _lazy("hsu_geo.unmix.classical.sunsal_tv",
                                        "SunsalTVUnmixer"))
MODELS.register_lazy("mvc_nmf", _lazy("hsu_geo.unmix.classical.mvc_nmf", "MvcNmfUnmixer"))
MODELS.register_lazy("khype", _lazy("hsu_geo.unmix.classical.khype", "KhypeUnmixer"))
for _name, _module, _cls in (("cresdae", "cresdae", "CResDAEUnmixer"),
                             ("nae", "nae", "NAEUnmixer"),
                             ("linear_ae", "linear_ae", "LinearAEUnmixer"),
                             ("convae", "convae", "ConvAEUnmixer"),
                             ("ssanu_net", "ssanu_net", "SSANUNetUnmixer"),
                             ("acr_net", "acr_net", "ACRNetUnmixer"),
                             ("auvae_net", "auvae_net", "AUVAENetUnmixer"),
                             ("dffn", "dffn", "DFFNUnmixer"),
                             ("cnnaeu", "cnnaeu", "CNNAEUUnmixer")):
    MODELS.register_lazy(_name, _lazy(f"hsu_geo.unmix.deep.{_module}", _cls))

__all__ = ["MODELS", "Unmixer"]
