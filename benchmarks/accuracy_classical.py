"""Accuracy of blind classical unmixing on Samson and Jasper Ridge: now part of accuracy.py.

Runs ``benchmarks/accuracy.py`` for FCLS with VCA (the CLI default) and N-FINDR endmembers on
Samson and Jasper Ridge, through the same pipeline and scoring (see that script for the
protocol); other arguments are passed on. ``--seeds N`` keeps this script's old meaning, the
number of seeds (0 to N-1); ranges and lists (``0-4``, ``0,3``) are passed on as they are.

    python benchmarks/accuracy_classical.py [--seeds 5] [--data ../shared/data]
        # = python benchmarks/accuracy.py --models fcls --datasets samson,jasper_ridge
        #       --extractors default,nfindr --seeds 0-4 ...
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from accuracy import main


def _args(argv: list[str]) -> list[str]:
    out = list(argv)
    for i, a in enumerate(out[:-1]):
        if a == "--seeds" and out[i + 1].isdigit():
            out[i + 1] = f"0-{int(out[i + 1]) - 1}"
    return ["--models", "fcls", "--datasets", "samson,jasper_ridge",
            "--extractors", "default,nfindr", *out]


if __name__ == "__main__":
    raise SystemExit(main(_args(sys.argv[1:])))
