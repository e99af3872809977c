"""Deep unmixing on torch: the :class:`DeepUnmixer` base, the shared training loop, the models
(CResDAE, NAE, LinearAE) and checkpoints. Devices come from ``--device`` (never chosen here)."""

from hsu_geo.unmix.deep._training import TrainEvent, TrainResult, TrainSettings, train
from hsu_geo.unmix.deep.base import DeepConfig, DeepUnmixer

__all__ = ["DeepConfig", "DeepUnmixer", "TrainEvent", "TrainResult", "TrainSettings", "train"]
