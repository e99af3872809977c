"""Nothing a user (or anyone who can write the results folder) supplies is executed: no
unpickling anywhere in the package, and the batch's shared model is plain data."""

from __future__ import annotations

import json
import pickle
import re
from pathlib import Path

import numpy as np
import pytest

import hsu_geo
from hsu_geo.batch import RECORD, run_batch
from hsu_geo.config import UnmixOptions
from hsu_geo.errors import ConfigError
from hsu_geo.unmix.fitted_io import load_fitted
from tests.test_batch import write_scene

PACKAGE = Path(hsu_geo.__file__).parent
#: calls that can execute code from a file's bytes
FORBIDDEN = [
    (re.compile(r"\bpickle\.loads?\("), "pickle.load"),
    (re.compile(r"\b(?:cPickle|dill|cloudpickle|joblib|shelve|marshal)\.load"), "unpickling"),
    (re.compile(r"allow_pickle\s*=\s*True"), "np.load(allow_pickle=True)"),
    (re.compile(r"\byaml\.(?:unsafe_load|full_load)\(|\byaml\.load\((?![^)]*Loader=_PresetLoader)"),
     "YAML without a safe loader"),
    (re.compile(r"(?<![.\w])(?:eval|exec)\("), "eval/exec"),
]


def test_no_unpickling_or_eval_anywhere_in_the_package() -> None:
    hits = []
    for path in sorted(PACKAGE.rglob("*.py")):
        text = path.read_text(encoding="utf-8")
        for pattern, what in FORBIDDEN:
            hits += [f"{path.relative_to(PACKAGE)}: {what}" for _ in pattern.finditer(text)]
        for call in re.finditer(r"torch\.load\(([^)]*)\)", text):
            if "weights_only=True" not in call.group(1):
                hits.append(f"{path.relative_to(PACKAGE)}: torch.load without weights_only")
    assert hits == []
    import yaml

    from hsu_geo.config import _PresetLoader

    assert issubclass(_PresetLoader, yaml.SafeLoader)


class Boom:
    def __reduce__(self):
        return (Path.write_text, (Path("/tmp/hsu-geo-pwned"), "pwned"))


def test_a_planted_model_file_in_the_results_folder_is_never_executed(tmp_path: Path) -> None:
    for i in range(2):
        write_scene(tmp_path / "in" / f"t{i}.tif", seed=i)
    opts = UnmixOptions(k="3", sample_size=2000)
    out = tmp_path / "out"
    first = run_batch(tmp_path / "in", out, opts, train_on="t1")
    assert first["training"]["file"] == "trained_model.npz"
    assert not list(out.glob("*.pkl"))
    # an attacker with write access to -o plants a pickle and points the record at it
    bomb = out / "trained_model.pkl"
    bomb.write_bytes(pickle.dumps(Boom()))
    import hashlib

    record = json.loads((out / RECORD).read_text())
    record["training"].update(file="trained_model.pkl",
                              sha256=hashlib.sha256(bomb.read_bytes()).hexdigest())
    for e in record["scenes"]:
        e["fingerprint"] = "stale"  # force the scenes to be redone (and the model reloaded)
    (out / RECORD).write_text(json.dumps(record))
    Path("/tmp/hsu-geo-pwned").unlink(missing_ok=True)
    again = run_batch(tmp_path / "in", out, opts, train_on="t1")
    assert not Path("/tmp/hsu-geo-pwned").exists()
    assert again["training"]["file"] == "trained_model.npz"
    assert again["summary"]["done"] == 2


def test_the_stored_model_is_reloaded_without_pickle(tmp_path: Path) -> None:
    for i in range(2):
        write_scene(tmp_path / "in" / f"t{i}.tif", seed=i)
    opts = UnmixOptions(k="3", sample_size=2000)
    out = tmp_path / "out"
    first = run_batch(tmp_path / "in", out, opts, train_on="t1")
    t0 = out / "t0" / "t0_fcls_abundance.tif"
    t0.write_bytes(t0.read_bytes() + b"\0")  # t0 must be redone with the stored model
    again = run_batch(tmp_path / "in", out, opts, train_on="t1")
    assert again["training"]["sha256"] == first["training"]["sha256"]  # reused, not refit
    fitted = load_fitted(out / "trained_model.npz")
    assert fitted.names == ["em_1", "em_2", "em_3"] and fitted.trained_on == "t1"
    assert fitted.unmixer.endmembers.shape == (3, fitted.wavelength.size) and fitted.band.size > 40


def test_an_npz_with_object_arrays_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "trained_model.npz"
    np.savez(path, endmembers=np.array([Boom()], dtype=object), wavelength=np.zeros(1),
             band=np.zeros(1), fit_info=np.array("{}"), meta=np.array("{}"))
    with pytest.raises(ConfigError, match="not a usable hsu-geo fitted model"):
        load_fitted(path)
    assert not Path("/tmp/hsu-geo-pwned").exists()
