"""GF-5 AHSI reader on fake deliveries written by :func:`hsu_geo.testing.write_gf5_delivery`."""

from __future__ import annotations

import tarfile
from pathlib import Path

import numpy as np
import pytest
import rasterio
from dask.callbacks import Callback

from hsu_geo.cube import validate_cube
from hsu_geo.errors import (
    ConfigError,
    HsuGeoError,
    InvalidSceneError,
    UnsupportedFormatError,
)
from hsu_geo.ingest import find_reader, open_scene
from hsu_geo.ingest import rasterio_array as ra
from hsu_geo.ingest.gf5 import Gf5AhsiReader
from hsu_geo.testing import (
    DEFAULT_GF5_PRODUCT,
    GF5_SWIR_NM,
    GF5_VNIR_NM,
    archive_delivery,
    default_ahsi_wavelengths,
    default_rpc,
    write_gf5_delivery,
)

PRODUCT = DEFAULT_GF5_PRODUCT
NV, NS, H, W = 20, 24, 40, 30
VN_WL = np.round(np.linspace(400.0, 1040.0, NV), 2)  # bands 18-20 (>= 960 nm) overlap SWIR
SW_WL = np.round(np.linspace(960.0, 2500.0, NS), 2)
VN_FW = np.full(NV, 5.5)
SW_FW = np.full(NS, 8.4)
N_KEPT_VN = int((SW_WL[0] > VN_WL).sum())


@pytest.fixture(scope="module")
def scene() -> dict[str, np.ndarray]:
    """DN, gains and offsets; VNIR is all-zero at (0, 0), SWIR at (39, 29)."""
    rng = np.random.default_rng(42)
    vn = rng.integers(1, 4096, (NV, H, W)).astype("uint16")
    sw = rng.integers(1, 4096, (NS, H, W)).astype("uint16")
    vn[:, 0, 0] = 0
    sw[:, H - 1, W - 1] = 0
    vn[3, 5, 5] = 0  # one zero band is not nodata
    return {
        "vn": vn, "sw": sw,
        "gv": rng.uniform(0.01, 0.1, NV), "ov": rng.uniform(-1.0, 1.0, NV),
        "gs": rng.uniform(0.005, 0.02, NS), "os": rng.uniform(-0.5, 0.5, NS),
    }


def write(out: Path, scene: dict[str, np.ndarray], **kwargs) -> Path:
    return write_gf5_delivery(
        out, scene["vn"], scene["sw"], gains_vnir=scene["gv"], offsets_vnir=scene["ov"],
        gains_swir=scene["gs"], offsets_swir=scene["os"], wavelengths_vnir=VN_WL,
        fwhm_vnir=VN_FW, wavelengths_swir=SW_WL, fwhm_swir=SW_FW, **kwargs,
    )


def expected_radiance(scene: dict[str, np.ndarray]) -> np.ndarray:
    """``(kept bands, H, W)`` float32: gain·DN + offset, NaN where a detector is all zero."""
    keep = SW_WL[0] > VN_WL
    vn = scene["gv"][keep, None, None] * scene["vn"][keep] + scene["ov"][keep, None, None]
    sw = scene["gs"][:, None, None] * scene["sw"] + scene["os"][:, None, None]
    vn[:, ~scene["vn"][keep].any(axis=0)] = np.nan
    sw[:, ~scene["sw"].any(axis=0)] = np.nan
    return np.concatenate([vn, sw]).astype("float32")


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory, scene: dict[str, np.ndarray]) -> Path:
    return write(tmp_path_factory.mktemp("gf5b"), scene)


@pytest.fixture(scope="module")
def cube(folder: Path):
    return open_scene(folder, chunks=16)


# -- values and metadata ---------------------------------------------------------------------

def test_radiance_is_gain_times_dn_plus_offset(cube, scene) -> None:
    np.testing.assert_array_equal(cube.values, expected_radiance(scene))
    assert cube.dtype == np.float32
    assert cube.attrs["quantity"] == "radiance"
    assert cube.attrs["units"] == "W m-2 sr-1 um-1"


def test_all_zero_spectrum_is_nodata_per_detector(cube) -> None:
    vn = cube.sel(band=cube.band <= NV)
    sw = cube.sel(band=cube.band > NV)
    assert np.isnan(vn.values[:, 0, 0]).all() and np.isfinite(sw.values[:, 0, 0]).all()
    assert np.isnan(sw.values[:, H - 1, W - 1]).all()
    assert np.isfinite(cube.values[:, 5, 5]).all()


def test_bands_trace_to_originals_and_overlap_is_dropped(cube) -> None:
    kept_vn = list(range(1, N_KEPT_VN + 1))
    assert cube["band"].values.tolist() == kept_vn + list(range(NV + 1, NV + NS + 1))
    np.testing.assert_array_equal(cube["wavelength"].values,
                                  np.concatenate([VN_WL[:N_KEPT_VN], SW_WL]))
    np.testing.assert_array_equal(cube["fwhm"].values, np.r_[VN_FW[:N_KEPT_VN], SW_FW])
    assert np.all(np.diff(cube["wavelength"].values) > 0)
    assert cube["good_band"].values.all()
    assert cube.attrs["dropped_at_ingest"] == [
        {"band": b, "wavelength_nm": float(VN_WL[b - 1]), "reason": "VNIR/SWIR overlap"}
        for b in range(N_KEPT_VN + 1, NV + 1)
    ]
    assert N_KEPT_VN == 17


def test_cube_contract_and_chunks(cube) -> None:
    validate_cube(cube)
    assert cube.dims == ("band", "y", "x")
    assert len(cube.data.chunks[0]) == 1
    assert max(cube.data.chunks[1]) == 16
    assert cube.attrs["reader"] == "gf5"
    assert cube.rio.crs is None


def test_rpcs_in_attrs(cube) -> None:
    expected = default_rpc(PRODUCT, H, W).to_dict()
    rpcs = cube.attrs["rpcs"]
    for key in ("lat_off", "lat_scale", "long_off", "long_scale", "line_off", "samp_scale"):
        assert rpcs[key] == pytest.approx(expected[key])
    assert rpcs["line_num_coeff"] == pytest.approx(expected["line_num_coeff"])
    assert "rpcs_swir" not in cube.attrs  # same RPCs for both detectors


def test_xml_and_name_metadata(cube) -> None:
    a = cube.attrs
    assert a["sensor"] == "AHSI" and a["satellite"] == "GF5B"
    assert a["product_id"] == PRODUCT
    assert a["product_level"] == "LEVEL1" and a["product_number"] == "0000252104"
    assert a["acquisition_time"] == "2022-12-08T03:12:41"
    assert a["acquisition_end_time"] == "2022-12-08T03:12:50"
    assert a["solar_zenith_deg"] == 58.61 and a["solar_azimuth_deg"] == 163.21
    assert a["satellite_zenith_deg"] == 0.0756 and a["satellite_azimuth_deg"] == 158.37
    assert a["centre_lonlat"] == [113.2, 36.3]
    (tl, tr, br, bl) = a["footprint_lonlat"]
    assert tl[0] < tr[0] and tl[1] > bl[1] and br[0] == pytest.approx(tr[0])
    assert all(abs(lon - 113.2) < 0.01 and abs(lat - 36.3) < 0.01 for lon, lat in (tl, br))
    assert a["calibration"] == "RadCal files GF5B_AHSI_RadCal_VNIR.raw, GF5B_AHSI_RadCal_SWIR.raw"
    names = [Path(p).name for p in a["source_files"]]
    assert f"{PRODUCT}_VN.tif" in names and f"{PRODUCT}_SW.rpb" in names
    assert f"{PRODUCT}.xml" in names and "GF5B_AHSI_Spectralresponse_SWIR.raw" in names


def test_real_gf5_band_tables_drop_vnir_145_to_150(tmp_path: Path) -> None:
    vn = np.ones((150, 4, 4), "uint16")
    sw = np.ones((180, 4, 4), "uint16")
    cube = open_scene(write_gf5_delivery(tmp_path, vn, sw), chunks=16)
    assert [d["band"] for d in cube.attrs["dropped_at_ingest"]] == list(range(145, 151))
    assert cube.sizes["band"] == 324
    np.testing.assert_array_equal(default_ahsi_wavelengths(150, "VNIR")[0], GF5_VNIR_NM)
    np.testing.assert_array_equal(default_ahsi_wavelengths(180, "SWIR")[0], GF5_SWIR_NM)


# -- layouts and containers ------------------------------------------------------------------

LAYOUTS = [
    pytest.param({"layout": "gf5b"}, id="gf5b-folder-rpb"),
    pytest.param({"layout": "gf5"}, id="gf5-folder-embedded"),
    pytest.param({"layout": "gf5b", "archive": "tar"}, id="gf5b-tar"),
    pytest.param({"layout": "gf5", "archive": "tar", "nested": False}, id="gf5-tar-flat"),
    pytest.param({"layout": "gf5b", "archive": "tar.gz"}, id="gf5b-tar.gz"),
    pytest.param({"layout": "gf5", "archive": "zip"}, id="gf5-zip"),
    pytest.param({"layout": "gf5b", "archive": "zip", "nested": False}, id="gf5b-zip-flat"),
    pytest.param({"layout": "gf5b", "rpc_storage": "embedded", "image_ext": ".tiff"},
                 id="gf5b-embedded-tiff"),
    pytest.param({"layout": "gf5", "rpc_storage": "rpb", "archive": "tar"}, id="gf5-rpb-tar"),
]


@pytest.mark.parametrize("options", LAYOUTS)
def test_every_layout_opens_the_same(tmp_path: Path, scene, options: dict) -> None:
    path = write(tmp_path, scene, **options)
    assert Gf5AhsiReader.guess_can_open(path)
    assert find_reader(path) is Gf5AhsiReader
    cube = open_scene(path, chunks=16)
    np.testing.assert_array_equal(cube.values, expected_radiance(scene))
    assert cube["band"].values[-1] == NV + NS
    assert cube.attrs["rpcs"]["lat_off"] == pytest.approx(36.3)
    assert cube.attrs["acquisition_time"] == "2022-12-08T03:12:41"


def test_gf5_layout_names_and_single_column_radcal(tmp_path: Path, scene) -> None:
    path = write_gf5_delivery(tmp_path, scene["vn"], scene["sw"], layout="gf5",
                              product="GF5_AHSI_E102.59_N24.38_20200212_009385_L10000072775")
    files = sorted(p.name for p in path.iterdir())
    assert "GF5_AHSI_VNIR_RadCal.raw" in files and "GF5_AHSI_SWIR_Spectralresponse.raw" in files
    assert not any(f.endswith(".rpb") for f in files)
    assert "\t" in (path / "GF5_AHSI_VNIR_Spectralresponse.raw").read_text()
    assert "," not in (path / "GF5_AHSI_VNIR_RadCal.raw").read_text()  # gains only
    cube = open_scene(path, chunks=16)
    keep = default_ahsi_wavelengths(NV, "VNIR")[0] < default_ahsi_wavelengths(NS, "SWIR")[0][0]
    gains = np.linspace(0.08, 0.03, NV)[keep]
    expected = (gains[:, None, None] * scene["vn"][keep]).astype("float32")
    expected[:, 0, 0] = np.nan
    np.testing.assert_array_equal(cube.values[: keep.sum()], expected)
    assert cube.attrs["satellite"] == "GF5" and cube.attrs["rpcs"]["long_off"] == 102.59


def test_open_from_an_image_path(folder: Path, scene) -> None:
    image = folder / f"{PRODUCT}_SW.tif"
    assert Gf5AhsiReader.guess_can_open(image)
    cube = open_scene(image, chunks=16)
    np.testing.assert_array_equal(cube.values, expected_radiance(scene))


def test_guess_by_content_and_negatives(tmp_path: Path, scene, folder: Path) -> None:
    tar = write(tmp_path / "a", scene, archive="tar")
    renamed = tar.rename(tar.with_name("delivery.tar"))
    assert Gf5AhsiReader.guess_can_open(renamed)
    assert Gf5AhsiReader.guess_can_open(folder.parent)  # holds one product folder
    other = tmp_path / "other"
    other.mkdir()
    (other / "scene.tif").write_bytes(b"")
    assert not Gf5AhsiReader.guess_can_open(other)
    assert not Gf5AhsiReader.guess_can_open(other / "scene.tif")
    wrong = tmp_path / "GF6_WFV_E1_N2_20200101_000001_L10000001.tar"
    assert not Gf5AhsiReader.guess_can_open(wrong)


def test_opening_reads_no_pixels(folder: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    reads: list[object] = []
    original = ra.WindowReader.__getitem__

    def counting(self, key):
        reads.append(key)
        return original(self, key)

    class Tasks(Callback):
        started = 0

        def _start(self, dsk) -> None:
            Tasks.started += 1

    monkeypatch.setattr(ra.WindowReader, "__getitem__", counting)
    with Tasks():
        cube = Gf5AhsiReader().open(folder, chunk_size=16)
        assert reads == [] and Tasks.started == 0
        cube.isel(x=slice(0, 4), y=slice(0, 4)).compute()
    assert len(reads) == 2 and Tasks.started == 1  # one window per detector


def test_writer_is_deterministic(tmp_path: Path, scene) -> None:
    a = write(tmp_path / "a", scene, archive="tar.gz")
    b = write(tmp_path / "b", scene, archive="tar.gz")
    assert a.read_bytes() == b.read_bytes()


# -- XML tolerance -----------------------------------------------------------------------------

def test_missing_xml_elements_and_file_are_tolerated(tmp_path: Path, scene) -> None:
    path = write(tmp_path / "a", scene, metadata={"SolarZenith": None, "StartTime": None,
                                                  "TopLeftLatitude": None})
    attrs = open_scene(path, chunks=16).attrs
    assert "solar_zenith_deg" not in attrs and "acquisition_time" not in attrs
    assert "footprint_lonlat" not in attrs and attrs["solar_azimuth_deg"] == 163.21
    path = write(tmp_path / "b", scene)
    (path / f"{PRODUCT}.xml").unlink()
    attrs = open_scene(path, chunks=16).attrs
    assert attrs["satellite"] == "GF5B" and attrs["acquisition_date"] == "2022-12-08"


# -- bad input: one-line errors naming the file -------------------------------------------------

def _remove(*names: str):
    """Damage: delete files of the delivery."""
    def damage(path: Path) -> None:
        for name in names:
            (path / name).unlink()
    return damage


def _rewrite(name: str, edit):
    """Damage: replace the lines of a text file by ``edit(lines)``."""
    def damage(path: Path) -> None:
        lines = (path / name).read_text().splitlines(keepends=True)
        (path / name).write_text("".join(edit(lines)))
    return damage


def _copy(name: str, new_name: str):
    """Damage: add a second candidate file."""
    def damage(path: Path) -> None:
        (path / new_name).write_bytes((path / name).read_bytes())
    return damage


VN_RADCAL, SW_RADCAL = "GF5B_AHSI_RadCal_VNIR.raw", "GF5B_AHSI_RadCal_SWIR.raw"
VN_SRF, SW_SRF = "GF5B_AHSI_Spectralresponse_VNIR.raw", "GF5B_AHSI_Spectralresponse_SWIR.raw"
MICROMETRES = [f"{w / 1000},{f / 1000}\n" for w, f in zip(SW_WL, SW_FW, strict=True)]

BAD = [
    pytest.param(_remove(f"{PRODUCT}_SW.tif"), "has no SWIR image", id="only-vnir"),
    pytest.param(_remove(f"{PRODUCT}_VN.tif"), "has no VNIR image", id="only-swir"),
    pytest.param(_remove(SW_RADCAL), "has no SWIR RadCal file", id="no-radcal"),
    pytest.param(_remove(VN_SRF), "has no VNIR Spectralresponse file", id="no-spectralresponse"),
    pytest.param(_rewrite(VN_RADCAL, lambda ls: ls[:-1]),
                 r"RadCal_VNIR\.raw: 19 lines but .*_VN\.tif has 20 bands", id="radcal-length"),
    pytest.param(_rewrite(SW_SRF, lambda ls: ls * 2),
                 r"Spectralresponse_SWIR\.raw: 48 lines but .* has 24 bands",
                 id="spectralresponse-length"),
    pytest.param(_rewrite(VN_SRF, lambda ls: [*ls[:4], ls[5], ls[4], *ls[6:]]),
                 r"Spectralresponse_VNIR\.raw: wavelengths not increasing at band 6",
                 id="non-monotonic"),
    pytest.param(_rewrite(SW_SRF, lambda ls: ["band,fwhm\n", *ls[1:]]),
                 r"Spectralresponse_SWIR\.raw: line 1 is not numeric", id="non-numeric"),
    pytest.param(_rewrite(SW_SRF, lambda ls: MICROMETRES),
                 r"Spectralresponse_SWIR\.raw: wavelengths 0\.96-2\.5 are outside",
                 id="micrometres"),
    pytest.param(_rewrite(SW_RADCAL, lambda ls: [line.rstrip() + ",7\n" for line in ls]),
                 r"RadCal_SWIR\.raw: expected 1 or 2 columns", id="radcal-3-columns"),
    pytest.param(_copy(f"{PRODUCT}_VN.tif", f"{PRODUCT}_VN.tiff"),
                 r"2 candidates for the VNIR image .*: .*_VN\.tif, .*_VN\.tiff",
                 id="two-vnir-images"),
    pytest.param(_copy(VN_RADCAL, "GF5B_AHSI_VNIR_RadCal.raw"),
                 "2 candidates for the VNIR RadCal file", id="two-radcal-orders"),
    pytest.param(_remove(f"{PRODUCT}_VN.rpb", f"{PRODUCT}_SW.rpb"),
                 r"_VN\.tif: no RPCs", id="no-rpcs"),
]


@pytest.mark.parametrize(("damage", "match"), BAD)
def test_bad_delivery_fails_loudly(tmp_path: Path, scene, damage, match: str) -> None:
    path = write(tmp_path, scene)
    damage(path)
    with pytest.raises(InvalidSceneError, match=match) as info:
        open_scene(path, chunks=16)
    assert "\n" not in str(info.value)


def test_vnir_swir_size_mismatch(tmp_path: Path, scene) -> None:
    path = write_gf5_delivery(tmp_path, scene["vn"], scene["sw"][:, :, :28])
    with pytest.raises(InvalidSceneError, match=r"_VN\.tif is 40x30 .* but .*_SW\.tif is 40x28"):
        open_scene(path, chunks=16)


def test_float_dn_is_unsupported(tmp_path: Path, scene) -> None:
    path = write_gf5_delivery(tmp_path, scene["vn"], scene["sw"])
    sw = path / f"{PRODUCT}_SW.tif"
    with rasterio.open(sw) as src:
        profile = src.profile
    profile.update(dtype="float32", predictor=1)
    with pytest.warns(rasterio.errors.NotGeoreferencedWarning), \
            rasterio.open(sw, "w", **profile) as dst:
        dst.write(scene["sw"].astype("float32"))
    with pytest.raises(UnsupportedFormatError, match=r"_SW\.tif: SWIR image holds float32"):
        open_scene(path, chunks=16)


def test_product_grammar_and_mixed_products(tmp_path: Path, scene) -> None:
    path = write(tmp_path, scene)
    for tag in ("VN", "SW"):
        (path / f"{PRODUCT}_{tag}.tif").rename(path / f"scene_{tag}.tif")
    with pytest.raises(InvalidSceneError, match=r"scene_VN\.tif: 'scene' does not follow"):
        open_scene(path, sensor="gf5", chunks=16)
    (path / "scene_SW.tif").rename(path / f"{PRODUCT}_SW.tif")
    with pytest.raises(InvalidSceneError, match="belong to different products"):
        open_scene(path, sensor="gf5", chunks=16)


def test_missing_swir_inside_zip_names_the_archive(tmp_path: Path, scene) -> None:
    path = write(tmp_path, scene)
    (path / f"{PRODUCT}_SW.tif").unlink()
    zipped = archive_delivery(path, "zip")
    with pytest.raises(InvalidSceneError, match=rf"{zipped.name}: GF-5 delivery has no SWIR"):
        open_scene(zipped, chunks=16)


def test_pax_tar_gets_a_repack_hint(tmp_path: Path, scene) -> None:
    path = write(tmp_path, scene)
    pax = tmp_path / "pax.tar"
    with tarfile.open(pax, "w", format=tarfile.PAX_FORMAT) as tf:
        tf.add(path, arcname=PRODUCT)
    with pytest.raises(InvalidSceneError, match=r"cannot open the VNIR image .*tar -H gnu"):
        open_scene(pax, sensor="gf5", chunks=16)


def test_bad_xml_and_wavelength_override(tmp_path: Path, scene) -> None:
    path = write(tmp_path / "a", scene, metadata={"StartTime": "yesterday"})
    with pytest.raises(InvalidSceneError, match=r"\.xml: <StartTime> is not a date-time"):
        open_scene(path, chunks=16)
    (path / f"{PRODUCT}.xml").write_text("<ProductMetaData><SolarZenith>")
    with pytest.raises(InvalidSceneError, match=r"\.xml: not well-formed XML"):
        open_scene(path, chunks=16)
    wl = tmp_path / "wl.csv"
    wl.write_text("500\n")
    with pytest.raises(ConfigError, match="carry their own Spectralresponse"):
        open_scene(write(tmp_path / "b", scene), wavelengths=wl, chunks=16)
    assert issubclass(ConfigError, HsuGeoError)


def test_tgz_suffix_and_separate_swir_rpcs(tmp_path: Path, scene) -> None:
    path = write(tmp_path / "a", scene)
    rpb = path / f"{PRODUCT}_SW.rpb"
    rpb.write_text(rpb.read_text().replace("latOffset = 36.3;", "latOffset = 36.31;"))
    tgz = archive_delivery(path, "tar.gz").rename(tmp_path / "a" / f"{PRODUCT}.tgz")
    cube = open_scene(tgz, chunks=16)
    assert cube.attrs["rpcs"]["lat_off"] == pytest.approx(36.3)
    assert cube.attrs["rpcs_swir"]["lat_off"] == pytest.approx(36.31)
    assert cube.attrs["source_files"][0].startswith(f"{tgz}/")
