"""The nine-dataset writer: files, .mat variables, tags, simplex, SNR, determinism, refusals."""

from __future__ import annotations

import json

import numpy as np
import pytest
import rasterio
import scipy.io

from hsu_geo.endmembers.library import load_usgs_library
from hsu_geo.errors import ConfigError, EndmemberError, OutputExistsError
from hsu_geo.ingest import open_scene
from hsu_geo.synth.datasets import (
    DEFAULT_MINERALS,
    SynthConfig,
    band_grid_from_file,
    dataset_paths,
    parse_band_spec,
    smooth_abundances,
    write_datasets,
)
from hsu_geo.write.tables import read_endmember_csv

ROWS, COLS = 16, 12
GRID = "400:2500:50"  # 43 bands: fast, still the full range
NAMES = [f"{m}_snr{s}" for m in ("linear", "bilinear", "pnmm") for s in (10, 20, 30)]


@pytest.fixture(scope="module")
def library():
    return load_usgs_library(DEFAULT_MINERALS)


@pytest.fixture(scope="module")
def nine(tmp_path_factory, library):
    out = tmp_path_factory.mktemp("synth")
    written = write_datasets(out, library, parse_band_spec(GRID),
                             SynthConfig(size=(ROWS, COLS), seed=7))
    return out, written


def _mat(out, name):
    return scipy.io.loadmat(out / name / f"{name}.mat", squeeze_me=True)


def test_nine_datasets_and_index(nine):
    out, written = nine
    assert [d.name for d in written] == NAMES
    for d in written:
        for p in (d.scene, d.mat, d.truth_abundance, d.truth_endmembers):
            assert p.is_file(), p
    index = json.loads((out / "index.json").read_text())
    assert sorted(index["datasets"]) == sorted(NAMES)
    entry = index["datasets"]["pnmm_snr20"]
    assert entry["seed"] == 7 and entry["b_range"] == [-0.3, 0.3]
    assert entry["files"]["scene"] == "pnmm_snr20/scene.tif"
    assert not list(out.rglob(".hsu-geo*"))


def test_mat_variables_have_the_papers_names_and_shapes(nine):
    out, _ = nine
    L = 43
    for name in NAMES:
        m = _mat(out, name)
        assert m["hyperspectral_cube"].shape == (ROWS, COLS, L)
        assert m["hyperspectral_cube"].dtype == np.float32
        assert m["noise_free_cube"].shape == (ROWS, COLS, L)
        assert m["abundance_cube"].shape == (ROWS, COLS, 5)
        assert m["spectra_library"].shape == (L, 5)
        assert m["wavelengths"].shape == (L,) and m["wavelengths"][0] == 400.0
        assert list(m["mineral_names"]) == list(DEFAULT_MINERALS)
        assert float(m["SNR_dB"]) == float(name.rsplit("snr", 1)[1])
        assert str(m["mixing_model"]) == name.split("_")[0]
        assert np.isclose(m["hyperspectral_cube"].max(), 1.0)  # max-normalised (§1.4)
        assert json.loads(str(m["generation_params"]))["seed"] == 7
    assert _mat(out, "bilinear_snr10")["nonlinearity_params"].shape == (ROWS, COLS, 10)
    b = _mat(out, "pnmm_snr10")["nonlinearity_params"]
    assert b.shape == (ROWS, COLS) and b.min() >= -0.3 and b.max() <= 0.3
    assert _mat(out, "linear_snr10")["nonlinearity_params"].size == 0


def test_scene_geotiff_tags_and_truth(nine):
    out, written = nine
    d = written[0]
    with rasterio.open(d.scene) as src:
        assert (src.count, src.height, src.width) == (43, ROWS, COLS)
        assert src.dtypes[0] == "float32" and src.crs.to_epsg() == 32611
        assert src.transform.a == 15.0 and src.transform.e == -15.0
        tags = src.tags(1)
        assert float(tags["wavelength"]) == 400.0 and float(tags["fwhm"]) == 50.0
        assert tags["wavelength_units"] == "Nanometers"
        assert src.tags()["quantity"] == "reflectance"
        transform = src.transform
    cube = open_scene(d.scene)
    np.testing.assert_allclose(cube["wavelength"].values, np.arange(400, 2501, 50.0))
    with rasterio.open(d.truth_abundance) as src:
        assert list(src.descriptions) == list(DEFAULT_MINERALS)
        assert src.transform == transform
        A = src.read()
    np.testing.assert_allclose(A.sum(axis=0), 1.0, atol=1e-6)
    assert A.min() >= 0.0
    table = read_endmember_csv(d.truth_endmembers)
    assert table.names == tuple(DEFAULT_MINERALS)
    np.testing.assert_array_equal(table.band, np.arange(1, 44))
    m = _mat(out, d.name)
    np.testing.assert_allclose(table.spectra.T, m["spectra_library"], rtol=1e-6)
    np.testing.assert_allclose(np.moveaxis(A, 0, -1), m["abundance_cube"], atol=1e-7)


def test_one_layout_on_the_simplex_for_all_datasets(nine):
    out, _ = nine
    ref = _mat(out, NAMES[0])["abundance_cube"]
    np.testing.assert_allclose(ref.sum(axis=-1), 1.0, atol=1e-6)
    assert ref.min() >= 0
    for name in NAMES[1:]:
        np.testing.assert_array_equal(_mat(out, name)["abundance_cube"], ref)


@pytest.mark.parametrize("name", NAMES)
def test_snr_within_half_a_db(nine, name):
    out, _ = nine
    m = _mat(out, name)
    noisy, clean = m["hyperspectral_cube"].astype(float), m["noise_free_cube"].astype(float)
    snr = 10 * np.log10(np.sum(clean**2) / np.sum((noisy - clean) ** 2))
    assert abs(snr - float(m["SNR_dB"])) < 0.5
    mixing, snr_db = name.split("_snr")
    with rasterio.open(dataset_paths(out, mixing, float(snr_db)).scene) as src:
        scene = np.moveaxis(src.read().astype(float), 0, -1)
    np.testing.assert_allclose(scene / float(m["scale_factor"]), noisy, rtol=1e-5, atol=1e-6)


def test_linear_noise_free_cube_is_a_times_m(nine):
    out, _ = nine
    m = _mat(out, "linear_snr30")
    clean = m["abundance_cube"].astype(float) @ m["spectra_library"].T.astype(float)
    np.testing.assert_allclose(m["noise_free_cube"] * m["scale_factor"], clean,
                               rtol=1e-5, atol=1e-6)


def test_a_seed_reproduces_a_dataset_whatever_the_subset(nine, tmp_path, library):
    out, _ = nine
    write_datasets(tmp_path / "a", library, parse_band_spec(GRID),
                   SynthConfig(mixings=("pnmm",), snrs_db=(20.0,), size=(ROWS, COLS), seed=7))
    write_datasets(tmp_path / "b", library, parse_band_spec(GRID),
                   SynthConfig(mixings=("pnmm",), snrs_db=(20.0,), size=(ROWS, COLS), seed=8))
    same = _mat(tmp_path / "a", "pnmm_snr20")["hyperspectral_cube"]
    np.testing.assert_array_equal(same, _mat(out, "pnmm_snr20")["hyperspectral_cube"])
    other = _mat(tmp_path / "b", "pnmm_snr20")["hyperspectral_cube"]
    assert not np.allclose(other, same)


def test_existing_datasets_are_not_overwritten(tmp_path, library):
    cfg = SynthConfig(mixings=("linear",), snrs_db=(30.0,), size=(8, 8))
    (d,) = write_datasets(tmp_path, library, parse_band_spec(GRID), cfg)
    before = d.scene.read_bytes()
    with pytest.raises(OutputExistsError, match="--overwrite"):
        write_datasets(tmp_path, library, parse_band_spec(GRID),
                       SynthConfig(mixings=("linear",), snrs_db=(30.0,), size=(8, 8), seed=3))
    assert d.scene.read_bytes() == before
    write_datasets(tmp_path, library, parse_band_spec(GRID),
                   SynthConfig(mixings=("linear", "pnmm"), snrs_db=(30.0,), size=(8, 8),
                               seed=3), overwrite=True)
    assert d.scene.read_bytes() != before
    index = json.loads((tmp_path / "index.json").read_text())
    assert sorted(index["datasets"]) == ["linear_snr30", "pnmm_snr30"]


def test_new_datasets_are_added_to_the_index(tmp_path, library):
    grid = parse_band_spec(GRID)
    write_datasets(tmp_path, library, grid, SynthConfig(mixings=("linear",), snrs_db=(30.0,),
                                                        size=(8, 8)))
    write_datasets(tmp_path, library, grid, SynthConfig(mixings=("linear",), snrs_db=(20.0,),
                                                        size=(8, 8)))
    index = json.loads((tmp_path / "index.json").read_text())
    assert sorted(index["datasets"]) == ["linear_snr20", "linear_snr30"]


def test_g1_abundances_match_the_spec_statistics():
    A = smooth_abundances(5, 128, 128, np.random.default_rng(0))
    assert A.shape == (128, 128, 5)
    np.testing.assert_allclose(A.sum(axis=-1), 1.0, atol=1e-12)
    top = A.max(axis=-1)
    assert 0.25 <= np.mean(top > 0.9) <= 0.42
    assert all((A[..., r] > 0.9).any() for r in range(5))  # near-pure regions for every one


def test_band_grids(tmp_path):
    grid = parse_band_spec("400:2500:10")
    assert grid.wavelength_nm.size == 211 and grid.fwhm_nm[0] == 10.0
    for bad in ("400:2500", "2500:400:10", "a:b:c", "400:2500:0"):
        with pytest.raises(ConfigError):
            parse_band_spec(bad)
    csv = tmp_path / "wl.csv"
    csv.write_text("wavelength_nm\n500\n510\n530\n")
    g = band_grid_from_file(csv)
    np.testing.assert_array_equal(g.fwhm_nm, [10.0, 10.0, 20.0])
    with pytest.raises(ConfigError, match="not found"):
        band_grid_from_file(tmp_path / "missing.csv")


def test_uncovered_bands_and_bad_settings_are_refused(tmp_path, library):
    with pytest.raises(EndmemberError, match="--bands"):
        write_datasets(tmp_path, library, parse_band_spec("2000:2700:50"),
                       SynthConfig(mixings=("linear",), snrs_db=(30.0,), size=(4, 4)))
    assert not (tmp_path / "linear_snr30" / "scene.tif").exists()
    for kwargs in ({"mixings": ("quadratic",)}, {"snrs_db": ()}, {"size": (1, 5)},
                   {"seed": -1}, {"snrs_db": (10.0, 10.0)}):
        with pytest.raises(ConfigError):
            SynthConfig(**kwargs)
