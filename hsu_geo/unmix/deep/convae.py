"""ConvAE — the convolutional autoencoder comparator of the CResDAE paper's Tables 3-5.

The paper names it without details; baselines.md §D2 identifies it with CNNAEU (Palsson et
al., TGRS 2021) at the model-zoo code's settings. So ``convae`` is :mod:`cnnaeu`'s network,
loss and patch training unchanged, with the code's training budget: 320 epochs of 250 random
40 x 40 patches (``cnnaeu`` defaults to 40 epochs so a CPU fit takes minutes). Registered under
its own name so its outputs, checkpoints and benchmark rows say which comparator ran.
"""

from __future__ import annotations

from dataclasses import dataclass

from hsu_geo.unmix.deep.cnnaeu import CNNAEUConfig, CNNAEUUnmixer


@dataclass(frozen=True)
class ConvAEConfig(CNNAEUConfig):
    """:class:`CNNAEUConfig` with the code's 320 epochs [C, baselines.md §D2]."""

    epochs: int = 320


class ConvAEUnmixer(CNNAEUUnmixer):
    name = "convae"
    description = ("ConvAE (CResDAE paper's comparator) = CNNAEU at the code's 320-epoch "
                   "budget: convolutional AE on patches, 13x13 linear conv decoder, SAD loss")
    Config = ConvAEConfig
