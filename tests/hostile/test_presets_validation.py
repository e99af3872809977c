"""Presets go through the very same checks as the command-line flags (issue 9, item B).

A value a flag refuses is refused in a preset too, as one line naming the preset, the key, the
value and what to give; ``-k`` has one rule (a whole number >= 2 or 'auto') that click
reports as a usage error (exit 2).
"""

from __future__ import annotations

from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from hsu_geo.cli.main import cli
from hsu_geo.cli.options import KType, _model_opts, chunk_opt
from hsu_geo.config import INT_RANGES, UnmixOptions, load_preset, options_from_mapping
from hsu_geo.errors import ConfigError
from tests.unmix.scenes import linear_scene, write_scene


def invoke(*args: object):
    return CliRunner().invoke(cli, [str(a) for a in args], catch_exceptions=False)


def one_line_error(result) -> str:
    assert result.exit_code == 1, result.output
    lines = [ln for ln in result.stderr.strip().splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("Error:"), result.stderr
    return lines[0]


@pytest.fixture(scope="module")
def scene(tmp_path_factory: pytest.TempPathFactory) -> Path:
    cube, _, _, wl = linear_scene(rows=12, cols=10, k=3, seed=3)
    return write_scene(tmp_path_factory.mktemp("scene") / "small.tif", cube, wl)


def preset(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "preset.yaml"
    path.write_text(text)
    return path


BAD = [
    ("chunk_size: 0", "chunk_size: 0 is not valid; give a whole number from 16 to 8192"),
    ("chunk_size: 8193", "chunk_size: 8193 is not valid"),
    ("chunk_size: abc", "chunk_size: 'abc' is not valid"),
    ("chunk_size: 512.5", "chunk_size: 512.5 is not valid"),
    ("chunk_size: true", "chunk_size: True is not valid"),
    ("sample_size: 0", "sample_size: 0 is not valid; give a whole number >= 100"),
    ("sample_size: [1, 2]", "sample_size: [1, 2] is not valid"),
    ("seed: abc", "seed: 'abc' is not valid; give a whole number from 0 to 4294967295"),
    ("seed: -1", "seed: -1 is not valid"),
    ("k: abc", "k: 'abc': give a whole number of endmembers >= 2, or 'auto' (estimated"),
    ("k: 1", "k: 1: give a whole number of endmembers >= 2"),
    ("k: 2.5", "k: 2.5: give a whole number"),
    ("k: [3]", "k: [3]: give a whole number"),
    ("settings: [a, b]", "settings: give a mapping of setting: value"),
    ("settings: {epochs: [1, 2]}", "settings: 'epochs': [1, 2] is not valid"),
    ("settings: {epochs: {a: 1}}", "settings: 'epochs': {'a': 1} is not valid"),
    ("settings: abc", "settings: give a mapping of setting: value"),
    ("model: [fcls]", "model: ['fcls'] is not valid; give a text value"),
    ("model: null", "model: None is not valid; give a text value"),
    ("endmembers: {a: 1}", "endmembers: {'a': 1} is not valid; give a text value (or leave"),
    ("name_threshold: abc", "name_threshold: 'abc' is not valid; give a number from 0 to 3.1416"),
    ("name_threshold: -1", "name_threshold: -1 is not valid"),
    ("scheduler: local:0", "scheduler: --scheduler 'local:0': N in local:N must be"),
]


@pytest.mark.parametrize(("text", "needle"), BAD, ids=[t for t, _ in BAD])
def test_bad_preset_value_is_one_line_naming_key_and_fix(scene: Path, tmp_path: Path,
                                                         text: str, needle: str):
    path = preset(tmp_path, text + "\n")
    msg = one_line_error(invoke("unmix", scene, "--pipeline", path, "-o", tmp_path / "o"))
    assert f"{path}: {needle}" in msg
    assert "internal error" not in msg
    assert not (tmp_path / "o").exists()


@pytest.mark.parametrize(("text", "needle"), BAD[:10], ids=[t for t, _ in BAD[:10]])
def test_batch_checks_presets_the_same_way(scene: Path, tmp_path: Path, text: str,
                                           needle: str):
    path = preset(tmp_path, text + "\n")
    msg = one_line_error(invoke("batch", scene.parent, "--pipeline", path, "-o",
                                tmp_path / "o", "-q"))
    assert needle in msg
    assert not (tmp_path / "o" / "batch.json").exists()


def _int_type(name: str) -> click.IntRange:
    for opt in (*_model_opts, chunk_opt):
        @opt
        def f(**kw):  # pragma: no cover - only its params are read
            return kw
        param = f.__click_params__[0]
        if param.name == name:
            return param.type
    raise AssertionError(name)


@pytest.mark.parametrize("key", sorted(INT_RANGES))
def test_flag_and_preset_accept_exactly_the_same_integers(key: str):
    low, high = INT_RANGES[key]
    itype = _int_type(key)
    assert (itype.min, itype.max) == (low, high)  # the flag's type is built from the table
    for value in (low - 1, low, low + 1, *((high, high + 1) if high is not None else ())):
        flag_ok = True
        try:
            itype.convert(value, None, None)
        except click.BadParameter:
            flag_ok = False
        try:
            options_from_mapping({key: value}, "p.yaml")
            preset_ok = True
        except ConfigError:
            preset_ok = False
        assert flag_ok == preset_ok, (key, value)


def test_chunk_size_zero_no_longer_bypasses_the_flag_range(scene: Path, tmp_path: Path):
    flag = invoke("unmix", scene, "--chunk-size", "0", "-o", tmp_path / "o")
    assert flag.exit_code == 2 and "0 is not in the range 16<=x<=8192" in flag.stderr
    msg = one_line_error(invoke("unmix", scene, "--pipeline", preset(tmp_path, "chunk_size: 0\n"),
                                "-o", tmp_path / "o"))
    assert "chunk_size: 0 is not valid; give a whole number from 16 to 8192" in msg
    assert not (tmp_path / "o").exists()


@pytest.mark.parametrize("value", ["abc", "1", "0", "-3", "2.5", "", "auto5"])
def test_bad_k_flag_is_a_usage_error(scene: Path, tmp_path: Path, value: str):
    res = invoke("unmix", scene, "-k", value, "-o", tmp_path / "o")
    assert res.exit_code == 2, res.output
    assert "Invalid value for '-k'" in res.stderr
    assert f"{value!r}: give a whole number of endmembers >= 2, or 'auto' (estimated from " \
        "the scene)" in res.stderr
    assert not (tmp_path / "o").exists()


@pytest.mark.parametrize(("value", "parsed"), [("auto", "auto"), ("AUTO", "auto"), ("3", "3"),
                                               ("07", "7"), (" 4 ", "4")])
def test_k_type_accepts_numbers_and_auto(value: str, parsed: str):
    assert KType().convert(value, None, None) == parsed
    assert options_from_mapping({"k": value}, "p.yaml").k == parsed


def test_good_k_flag_runs(scene: Path, tmp_path: Path):
    res = invoke("unmix", scene, "-k", "3", "-m", "fcls", "--sample-size", "100", "-o",
                 tmp_path / "o", "-q")
    assert res.exit_code == 0, res.output
    assert (tmp_path / "o" / "small_fcls_abundance.tif").is_file()


def test_preset_values_become_typed_options(tmp_path: Path):
    opts = load_preset(preset(tmp_path, "k: 5\nchunk_size: '256'\nseed: 7\nname_threshold: 0.2\n"
                                        "drop_bands: 200\nsettings: {epochs: 3, shuffle: false}\n"))
    assert opts == UnmixOptions(k="5", chunk_size=256, seed=7, name_threshold=0.2,
                                drop_bands="200", settings={"epochs": "3", "shuffle": "False"})


def test_oversized_or_special_preset_files(tmp_path: Path):
    big = preset(tmp_path, "# " + "x" * (1024 * 1024) + "\nk: 3\n")
    with pytest.raises(ConfigError, match=r"preset\.yaml: preset \(--pipeline\) is too large"):
        load_preset(big)
    with pytest.raises(ConfigError, match="not found; check the path"):
        load_preset(tmp_path / "missing.yaml")
    with pytest.raises(ConfigError, match="is a folder"):
        load_preset(tmp_path)


def test_anchor_without_alias_is_refused_too(tmp_path: Path):
    with pytest.raises(ConfigError, match=r"preset\.yaml: line 1: YAML anchors and aliases"):
        load_preset(preset(tmp_path, "model: &m fcls\n"))


def test_yaml_syntax_error_is_one_line(scene: Path, tmp_path: Path):
    msg = one_line_error(invoke("unmix", scene, "--pipeline", preset(tmp_path, "k: [3\nseed: 1\n"),
                                "-o", tmp_path / "o"))
    assert "preset.yaml: not valid YAML (" in msg
