"""Plugin registries: lookup and errors, lazy loading, entry-point discovery (a fake third-party
reader registers; a broken one warns and is skipped), and every installed reader's basics."""

from __future__ import annotations

import textwrap
import warnings
from importlib.metadata import EntryPoint
from pathlib import Path

import pytest

from hsu_geo.errors import ConfigError, UnsupportedFormatError
from hsu_geo.ingest import READERS, find_reader, open_scene
from hsu_geo.ingest.base import SceneReader
from hsu_geo.registry import Registry
from tests.ingest.fakes import ramp, write_geotiff

GROUP = "hsu_geo.readers"

PLUGIN = '''
from pathlib import Path
from hsu_geo.ingest.base import SceneReader
from hsu_geo.ingest.geotiff import GeoTiffReader


class FakeReader(SceneReader):
    """A third-party reader for '.fake' files (really GeoTIFFs)."""

    name = "fake"
    description = "fake third-party reader"
    sensors = ("FAKE",)
    priority = 10

    @classmethod
    def guess_can_open(cls, path: Path) -> bool:
        return path.suffix == ".fake"

    def open(self, path, *, chunk_size, wavelengths=None):
        cube = GeoTiffReader().open(path, chunk_size=chunk_size, wavelengths=wavelengths)
        cube.attrs["sensor"] = "FAKE"
        return cube
'''


@pytest.fixture
def plugin_module(tmp_path, monkeypatch):
    """An importable module ``hsu_fake_plugin`` standing in for a third-party distribution."""
    (tmp_path / "hsu_fake_plugin.py").write_text(textwrap.dedent(PLUGIN))
    monkeypatch.syspath_prepend(str(tmp_path))
    return "hsu_fake_plugin"


def _ep(name: str, value: str) -> EntryPoint:
    return EntryPoint(name=name, value=value, group=GROUP)


def test_register_get_and_names():
    reg: Registry[object] = Registry("thing")
    reg.register("b", 2)

    @reg.register("a")
    class A:  # decorator form returns the class unchanged
        pass

    assert reg.get("a") is A and reg.get("b") == 2
    assert reg.names() == ["a", "b"]
    assert "a" in reg and "zzz" not in reg and 3 not in reg
    assert list(reg.items()) == [("a", A), ("b", 2)]


def test_unknown_name_lists_valid_ones():
    reg: Registry[int] = Registry("model")
    reg.register("fcls", 1)
    reg.register("nnls", 2)
    with pytest.raises(ConfigError, match=r"unknown model 'vca'; choose one of: fcls, nnls"):
        reg.get("vca")
    with pytest.raises(ConfigError, match=r"\(none installed\)"):
        Registry("model").get("x")


def test_lazy_entries_import_on_first_use():
    reg: Registry[int] = Registry("thing")
    calls = []
    reg.register_lazy("late", lambda: calls.append(1) or 42)
    assert reg.names() == ["late"] and calls == []
    assert reg.get("late") == 42 and reg.get("late") == 42
    assert calls == [1]


def test_lazy_entry_that_fails_to_import_is_skipped_with_a_warning():
    reg: Registry[int] = Registry("reader")

    def broken():
        raise ImportError("no module named 'h5py'")

    reg.register_lazy("needs_h5py", broken)
    reg.register("ok", 1)
    with pytest.warns(RuntimeWarning, match="reader 'needs_h5py' unavailable: .*h5py"):
        items = list(reg.items())
    assert items == [("ok", 1)]
    assert reg.names() == ["ok"]


def test_entry_point_from_a_fake_distribution_registers_a_reader(plugin_module, tmp_path):
    reg: Registry[type[SceneReader]] = Registry("reader", group=GROUP)
    reg.load_entry_points([_ep("fake", f"{plugin_module}:FakeReader")])
    cls = reg.get("fake")
    assert issubclass(cls, SceneReader) and cls.name == "fake"
    assert cls.guess_can_open(Path("scene.fake"))


def test_broken_entry_point_warns_and_is_skipped(plugin_module):
    reg: Registry[type[SceneReader]] = Registry("reader", group=GROUP)
    eps = [_ep("missing", "hsu_no_such_module_xyz:Reader"),
           _ep("typo", f"{plugin_module}:NoSuchClass"),
           _ep("fake", f"{plugin_module}:FakeReader")]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        reg.load_entry_points(eps)
    messages = [str(w.message) for w in caught if issubclass(w.category, RuntimeWarning)]
    assert len(messages) == 2
    assert "could not load reader plugin 'missing' (hsu_no_such_module_xyz:Reader)" in \
        messages[0]
    assert "'typo'" in messages[1]
    assert reg.names() == ["fake"]
    with pytest.raises(ConfigError, match="choose one of: fake"):
        reg.get("missing")


def test_entry_point_cannot_take_an_existing_name(plugin_module):
    reg: Registry[object] = Registry("reader", group=GROUP)
    reg.register("fake", object())
    with pytest.warns(RuntimeWarning, match="'fake' from entry point .* ignored: the name is "
                                            "already taken"):
        reg.load_entry_points([_ep("fake", f"{plugin_module}:FakeReader")])
    assert not isinstance(reg.get("fake"), type)


def test_entry_point_naming_the_same_object_is_silent():
    reg: Registry[object] = Registry("reader", group=GROUP)
    from hsu_geo.ingest.envi import EnviReader

    reg.register_lazy("envi", lambda: EnviReader)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        reg.load_entry_points([_ep("envi", "hsu_geo.ingest.envi:EnviReader")])
    assert reg.get("envi") is EnviReader


def test_plugin_reader_used_by_open_scene(plugin_module, tmp_path, monkeypatch):
    path = write_geotiff(tmp_path / "scene.fake", ramp(3, 8, 8),
                         wavelengths_nm=[500.0, 600.0, 700.0])
    fresh: Registry[type[SceneReader]] = Registry("reader", group=GROUP)
    for name, cls in READERS.items():
        fresh.register(name, cls)
    fresh.load_entry_points([_ep("fake", f"{plugin_module}:FakeReader")])
    monkeypatch.setattr("hsu_geo.ingest.READERS", fresh)
    assert find_reader(path).name == "fake"
    cube = open_scene(path, chunks=16)
    assert cube.attrs["reader"] == "fake" and cube.attrs["sensor"] == "FAKE"


# --- the installed readers -------------------------------------------------------------------

def test_builtin_readers_are_registered():
    assert {"geotiff", "envi", "enmap", "gf5"} <= set(READERS.names())


def test_unknown_sensor_lists_readers(tmp_path):
    (tmp_path / "x.tif").write_bytes(b"")
    with pytest.raises(ConfigError,
                       match=r"unknown reader 'avhrr'; choose one of: .*enmap.*envi.*geotiff"):
        open_scene(tmp_path / "x.tif", sensor="avhrr")


def test_unrecognised_file_names_the_readers(tmp_path):
    path = tmp_path / "notes.txt"
    path.write_text("hello")
    with pytest.raises(UnsupportedFormatError,
                       match=r"no reader recognises this file; installed readers: .*--sensor NAME"):
        open_scene(path)


@pytest.mark.parametrize("name", READERS.names())
def test_every_reader_has_the_basics(name, tmp_path):
    cls = READERS.get(name)
    assert issubclass(cls, SceneReader)
    assert cls.name == name
    assert cls.description and isinstance(cls.sensors, tuple)
    assert isinstance(cls.priority, int)
    text = tmp_path / "notes.txt"
    text.write_text("hello")
    assert cls.guess_can_open(text) is False
    assert not cls.guess_can_open(tmp_path / "does_not_exist.tif")
