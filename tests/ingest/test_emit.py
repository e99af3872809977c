"""EMIT L2A reflectance NetCDF reader and GLT orthorectification, on small files the tests write
in the layout of the public product (LP DAAC EMIT L2A RFL V001):

``reflectance(downtrack, crosstrack, bands)`` float32 with ``_FillValue`` -9999; groups
``sensor_band_parameters`` (``wavelengths``, ``fwhm``, ``good_wavelengths``) and ``location``
(``glt_x``, ``glt_y`` on ``(ortho_y, ortho_x)``, 1-based, 0 = none; ``lat``, ``lon``, ``elev``);
global ``geotransform``, ``spatial_ref`` (EPSG:4326 WKT) and ``time_coverage_*``.
"""

from __future__ import annotations

import json
from pathlib import Path

import dask.array as da
import h5netcdf
import numpy as np
import pytest
import rasterio
import xarray as xr
from affine import Affine
from click.testing import CliRunner
from rasterio.crs import CRS

from hsu_geo.cli.main import cli
from hsu_geo.errors import InvalidSceneError, UnsupportedFormatError
from hsu_geo.ingest import find_reader, open_scene
from hsu_geo.ingest.emit import EmitL2aReader, granule_time
from hsu_geo.stac import scene_properties
from hsu_geo.write.outputs import write_outputs
from tests.ingest.fakes import check_cube_contract

GRANULE = "EMIT_L2A_RFL_001_20230123T004529_2302216_001"
ROWS, COLS, NB = 12, 10, 30
#: 0-based bands flagged 0 in good_wavelengths: the 1400 and 1900 nm water-vapour bands as in
#: EMIT, and band 12 (1182 nm), which no default wavelength rule would drop
BAD = [11, 14, 20, 21]
FILL_PIXELS = [(0, 0), (5, 7)]  # (downtrack, crosstrack) pixels that are -9999 in every band
GT = (-116.5, 0.0006, 0.0, 35.2, 0.0, -0.0006)  # GLT grid, GDAL order, EPSG:4326


def emit_wavelengths(nb: int = NB) -> np.ndarray:
    """EMIT-like band centres (nm): 381 to 2493 nm, evenly spaced."""
    return np.linspace(381.0, 2493.0, nb)


def endmember_spectra(wl: np.ndarray) -> np.ndarray:
    """Three smooth, distinct reflectance spectra ``(3, bands)`` in 0..1."""
    x = (wl - wl.min()) / (wl.max() - wl.min())
    return np.stack([0.1 + 0.5 * x, 0.6 - 0.4 * x, 0.3 + 0.25 * np.sin(3 * np.pi * x)])


def rotated_glt(rows: int, cols: int, angle_deg: float = 25.0, step: float = 0.7,
                gaps: int = 3, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """A GLT for a sensor grid of ``rows`` x ``cols`` seen rotated by ``angle_deg`` on an ortho
    grid of ``step`` sensor pixels per ortho pixel (so some sensor pixels appear twice).

    Returns ``(glt_x, glt_y)`` int32 ``(ortho_rows, ortho_cols)``: 1-based crosstrack and
    downtrack indices of the nearest sensor pixel, 0 outside the swath and at ``gaps`` random
    inside pixels; a few valid entries are negative (EMIT's "filled from a neighbour").
    """
    a = np.deg2rad(angle_deg)
    half = 0.5 * np.hypot(rows, cols)
    n = int(np.ceil(2 * half / step)) + 1
    v, u = np.meshgrid((np.arange(n) - n / 2 + 0.5) * step, (np.arange(n) - n / 2 + 0.5) * step,
                       indexing="ij")
    y = np.cos(a) * v - np.sin(a) * u + rows / 2
    x = np.sin(a) * v + np.cos(a) * u + cols / 2
    iy, ix = np.floor(y).astype(int), np.floor(x).astype(int)
    inside = (iy >= 0) & (iy < rows) & (ix >= 0) & (ix < cols)
    gx = np.where(inside, ix + 1, 0).astype("int32")
    gy = np.where(inside, iy + 1, 0).astype("int32")
    rng = np.random.default_rng(seed)
    flat = np.flatnonzero(inside)
    holes = rng.choice(flat, gaps, replace=False)
    gx.reshape(-1)[holes] = 0
    gy.reshape(-1)[holes] = 0
    filled = rng.choice(np.setdiff1d(flat, holes), 4, replace=False)
    gx.reshape(-1)[filled] *= -1
    gy.reshape(-1)[filled] *= -1
    return gx, gy


def write_emit_l2a(
    folder: Path,
    *,
    name: str = GRANULE,
    rows: int = ROWS,
    cols: int = COLS,
    nb: int = NB,
    seed: int = 0,
    omit: tuple[str, ...] = (),
) -> tuple[Path, dict[str, np.ndarray]]:
    """Write ``<name>.nc`` in the EMIT L2A RFL layout; return its path and the arrays written.

    Reflectance is a mixture of :func:`endmember_spectra` (random abundances on the simplex,
    a little noise); bad bands hold -0.01 as in the product; :data:`FILL_PIXELS` are -9999.
    ``omit`` drops named parts ("group:location", "var:reflectance", "attr:geotransform",
    "var:sensor_band_parameters/good_wavelengths", ...) to make broken products.
    """
    rng = np.random.default_rng(seed)
    wl = emit_wavelengths(nb)
    spectra = endmember_spectra(wl)
    ab = rng.dirichlet(np.ones(3), size=(rows, cols))
    refl = (ab @ spectra + rng.normal(0, 0.002, (rows, cols, nb))).astype("float32")
    good = np.ones(nb, "int32")
    good[[b for b in BAD if b < nb]] = 0
    refl[:, :, good == 0] = -0.01
    for r, c in FILL_PIXELS:
        if r < rows and c < cols:
            refl[r, c, :] = -9999.0
    gx, gy = rotated_glt(rows, cols, seed=seed)
    path = Path(folder) / f"{name}.nc"
    with h5netcdf.File(path, "w") as f:
        f.dimensions = {"downtrack": rows, "crosstrack": cols, "bands": nb,
                        "ortho_y": gx.shape[0], "ortho_x": gx.shape[1]}
        if "var:reflectance" not in omit:
            v = f.create_variable("reflectance", ("downtrack", "crosstrack", "bands"), "f4",
                                  data=refl, fillvalue=np.float32(-9999.0))
            v.attrs["long_name"] = "Surface Reflectance"
            v.attrs["units"] = "unitless"
        if "group:sensor_band_parameters" not in omit:
            g = f.create_group("sensor_band_parameters")
            for var, values, dtype in (("wavelengths", wl, "f4"),
                                       ("fwhm", np.full(nb, 8.5), "f4"),
                                       ("good_wavelengths", good, "i4")):
                if f"var:sensor_band_parameters/{var}" not in omit:
                    g.create_variable(var, ("bands",), dtype, data=values)
        if "group:location" not in omit:
            g = f.create_group("location")
            for var, values in (("glt_x", gx), ("glt_y", gy)):
                if f"var:location/{var}" not in omit:
                    g.create_variable(var, ("ortho_y", "ortho_x"), "i4", data=values,
                                      fillvalue=np.int32(-9999))
            lat, lon = np.meshgrid(np.linspace(35.19, 35.18, rows),
                                   np.linspace(-116.49, -116.48, cols), indexing="ij")
            for var, values in (("lat", lat), ("lon", lon), ("elev", np.full_like(lat, 900.0))):
                g.create_variable(var, ("downtrack", "crosstrack"), "f8", data=values,
                                  fillvalue=-9999.0)
        if "attr:geotransform" not in omit:
            f.attrs["geotransform"] = np.array(GT, dtype="float64")
        if "attr:spatial_ref" not in omit:
            f.attrs["spatial_ref"] = CRS.from_epsg(4326).to_wkt()
        f.attrs["time_coverage_start"] = "2023-01-23T00:45:29+0000"
        f.attrs["time_coverage_end"] = "2023-01-23T00:45:41+0000"
        f.attrs["instrument"] = "EMIT"
        f.attrs["platform"] = "ISS"
    return path, {"reflectance": refl, "good": good, "wavelength": wl, "glt_x": gx,
                  "glt_y": gy, "abundance": ab}


def ortho_lookup(sensor: np.ndarray, gx: np.ndarray, gy: np.ndarray) -> np.ndarray:
    """Reference GLT lookup, written independently of hsu_geo: ``(..., rows, cols)`` sensor
    array -> ``(..., ortho_rows, ortho_cols)``, NaN where the GLT is 0."""
    out = np.full(sensor.shape[:-2] + gx.shape, np.nan, dtype="float32")
    for r in range(gx.shape[0]):
        for c in range(gx.shape[1]):
            if gx[r, c] != 0 and gy[r, c] != 0:
                out[..., r, c] = sensor[..., abs(gy[r, c]) - 1, abs(gx[r, c]) - 1]
    return out


@pytest.fixture
def product(tmp_path):
    return write_emit_l2a(tmp_path)


def _run(*args):
    return CliRunner().invoke(cli, [str(a) for a in args])


def test_granule_time():
    assert granule_time(f"{GRANULE}.nc") == "2023-01-23T00:45:29Z"
    assert granule_time("/data/EMIT_L2A_RFL_001_20240805T171207_2421811_012.nc") \
        == "2024-08-05T17:12:07Z"
    assert granule_time("scene.nc") is None
    assert granule_time("EMIT_L2A_RFL_001_20231323T004529_2302216_001.nc") is None  # month 13


def test_reader_is_picked_and_cube_follows_contract(product):
    path, arrays = product
    assert find_reader(path) is EmitL2aReader
    cube = open_scene(path, chunks=16)
    check_cube_contract(cube, chunk=16, n_bands=NB)
    assert cube.sizes == {"band": NB, "y": ROWS, "x": COLS}  # y = downtrack, x = crosstrack
    np.testing.assert_allclose(cube["wavelength"].values, arrays["wavelength"], rtol=1e-6)
    np.testing.assert_allclose(cube["fwhm"].values, 8.5)
    np.testing.assert_array_equal(cube["band"].values, np.arange(1, NB + 1))
    a = cube.attrs
    assert (a["sensor"], a["quantity"], a["reader"]) == ("EMIT", "reflectance", "emit")
    assert a["product_id"] == GRANULE
    assert a["acquisition_time"] == "2023-01-23T00:45:29Z"
    assert a["orbit"] == "2302216" and a["orbit_scene"] == "001"
    assert a["glt"]["shape"] == list(arrays["glt_x"].shape)
    assert a["glt"]["transform"] == list(Affine.from_gdal(*GT))[:6]
    assert CRS.from_wkt(a["glt"]["crs"]).to_epsg() == 4326
    assert cube.rio.crs is None and "rpcs" not in a  # sensor geometry: only the GLT locates it


def test_renamed_product_is_recognised_by_its_structure(product, tmp_path):
    path, _ = product
    renamed = path.rename(tmp_path / "my_scene.nc")
    assert find_reader(renamed) is EmitL2aReader
    cube = open_scene(renamed, chunks=16)
    assert cube.attrs["product_id"] == "my_scene"
    # no granule id: the time comes from time_coverage_start
    assert cube.attrs["acquisition_time"] == "2023-01-23T00:45:29Z"


def test_missing_spatial_ref_assumes_wgs84(tmp_path, caplog):
    path, _ = write_emit_l2a(tmp_path, omit=("attr:spatial_ref",))
    cube = open_scene(path, chunks=16)
    assert CRS.from_wkt(cube.attrs["glt"]["crs"]).to_epsg() == 4326
    assert "no global attribute 'spatial_ref'" in caplog.text


def test_pixels_fill_and_bad_bands(product):
    path, arrays = product
    cube = open_scene(path, chunks=16)
    expected = arrays["reflectance"].transpose(2, 0, 1).copy()
    for r, c in FILL_PIXELS:
        expected[:, r, c] = np.nan
    np.testing.assert_array_equal(cube.values, expected)
    assert cube.dtype == np.float32
    np.testing.assert_array_equal(cube["good_band"].values, arrays["good"] == 1)


def test_cf_packing_is_applied(product):
    path, arrays = product
    with h5netcdf.File(path, "a") as f:
        f.variables["reflectance"].attrs["scale_factor"] = np.float32(2.0)
        f.variables["reflectance"].attrs["add_offset"] = np.float32(0.5)
    cube = open_scene(path, chunks=16)
    expected = arrays["reflectance"].transpose(2, 0, 1) * np.float32(2) + np.float32(0.5)
    for r, c in FILL_PIXELS:
        expected[:, r, c] = np.nan
    np.testing.assert_allclose(cube.values, expected, rtol=1e-6)
    assert cube.attrs["calibration"] == "CF scale_factor 2, add_offset 0.5"


def test_lazy_band_complete_chunks(tmp_path):
    path, arrays = write_emit_l2a(tmp_path, rows=40, cols=36, nb=NB)
    cube = open_scene(path, chunks=16)
    assert isinstance(cube.data, da.Array)
    assert cube.data.chunks == ((NB,), (16, 16, 8), (16, 16, 4))
    # no array as large as the scene sits in the graph: pixels are read per chunk
    scene_size = NB * 40 * 36
    assert not any(isinstance(v, np.ndarray) and v.size >= scene_size
                   for v in dict(cube.data.__dask_graph__()).values())
    block = cube.data.blocks[0, 1, 2].compute()
    ref = arrays["reflectance"][16:32, 32:36, :].transpose(2, 0, 1)
    np.testing.assert_array_equal(block, ref)


def test_info_reports_sensor_time_and_bands(product):
    path, _ = product
    result = _run("info", path, "--json")
    assert result.exit_code == 0, result.output
    rec = json.loads(result.stdout)
    assert rec["sensor"] == "EMIT" and rec["reader"] == "emit"
    assert rec["acquisition_time"] == "2023-01-23T00:45:29Z"
    product = {d["band"] for d in rec["dropped"] if d["reason"].startswith("product bad-band")}
    assert product == {b + 1 for b in BAD}
    assert rec["bands_total"] == NB and rec["bands_kept"] == NB - len(rec["dropped"])
    assert rec["crs"] == "GLT -> EPSG:4326"
    text = _run("info", path)
    assert text.exit_code == 0, text.output
    assert "EMIT" in text.stdout and "Acquired     2023-01-23T00:45:29Z" in text.stdout
    assert f"Bands        {rec['bands_kept']} of {NB} kept" in text.stdout
    assert "band   12    1182.1 nm  product bad-band list" in text.stdout


def test_writer_orthorectifies_through_the_glt(product, tmp_path):
    """Known sensor-geometry values go through the writer: every ortho pixel is the sensor
    pixel the GLT names, nodata where the GLT is 0, on the geotransform grid in EPSG:4326."""
    path, arrays = product
    cube = open_scene(path, chunks=16)
    rows, cols = np.mgrid[0:ROWS, 0:COLS]
    sensor = np.stack([rows * 100.0 + cols, rows - 0.5 * cols]).astype("float32")
    sensor[:, 3, 4] = np.nan
    result = xr.Dataset(
        {"abundance": (("endmember", "y", "x"), da.from_array(sensor, chunks=(2, 5, 5))),
         "reconstruction_rmse": (("y", "x"), da.from_array(sensor[0] / 1000, chunks=5)),
         "endmember_spectrum": (("endmember", "band"), np.ones((2, NB), "float32"))},
        coords={"endmember": ["a", "b"], "band": np.arange(1, NB + 1),
                "wavelength": ("band", arrays["wavelength"])},
        attrs={k: cube.attrs[k] for k in ("sensor", "product_id", "glt", "acquisition_time")},
    )
    out = write_outputs(result, tmp_path / "out", GRANULE, "test")
    expected = ortho_lookup(sensor, arrays["glt_x"], arrays["glt_y"])
    with rasterio.open(out["abundance"]) as src:
        assert src.crs.to_epsg() == 4326
        assert src.transform.almost_equals(Affine.from_gdal(*GT))
        assert (src.height, src.width) == arrays["glt_x"].shape
        got = src.read()
        assert src.tags()["ACQUISITION_TIME"] == "2023-01-23T00:45:29Z"
    np.testing.assert_array_equal(got, expected)
    assert np.isnan(got[:, arrays["glt_x"] == 0]).all()
    with rasterio.open(out["rmse"]) as src:
        np.testing.assert_allclose(src.read(1), expected[0] / 1000, rtol=1e-6)
    record = json.loads(Path(out["run"]).read_text())
    assert record["output_grid"]["orthorectified_from_glt"] is True
    assert record["output_grid"]["crs"] == "EPSG:4326"


def _fcls(M: np.ndarray, Y: np.ndarray, delta: float = 1e3) -> np.ndarray:
    """Reference fully constrained least squares (NNLS with a weighted sum-to-one row)."""
    from scipy.optimize import nnls

    A = np.vstack([M.T, delta * np.ones(M.shape[0])])
    return np.array([nnls(A, np.append(y, delta))[0] for y in Y])


def test_cli_unmix_writes_glt_grid_outputs(product, tmp_path):
    path, arrays = product
    out = tmp_path / "out"
    result = _run("unmix", path, "-m", "fcls", "-k", "3", "-o", out, "-q")
    assert result.exit_code == 0, result.output
    abundance = out / f"{GRANULE}_fcls_abundance.tif"
    gx, gy = arrays["glt_x"], arrays["glt_y"]
    with rasterio.open(abundance) as src:
        assert src.crs.to_epsg() == 4326
        assert src.transform.almost_equals(Affine.from_gdal(*GT))
        assert (src.height, src.width) == gx.shape
        got = src.read()
        assert src.tags()["ACQUISITION_TIME"] == "2023-01-23T00:45:29Z"
    assert got.shape[0] == 3
    # the sensor-geometry abundances, recomputed from the written endmembers and the file
    table = np.genfromtxt(out / f"{GRANULE}_fcls_endmembers.csv", delimiter=",", names=True)
    bands = table["band"].astype(int) - 1
    M = np.stack([table[n] for n in table.dtype.names if n not in ("band", "wavelength_nm",
                                                                     "fwhm_nm")])
    assert M.shape == (3, bands.size) and not set(bands) & set(BAD)
    Y = arrays["reflectance"][:, :, bands].reshape(-1, bands.size)
    ref = _fcls(M, Y).T.reshape(3, ROWS, COLS).astype("float32")
    for r, c in FILL_PIXELS:
        ref[:, r, c] = np.nan
    expected = ortho_lookup(ref, gx, gy)
    assert np.array_equal(np.isnan(got), np.isnan(expected))
    np.testing.assert_allclose(got, expected, atol=2e-3, equal_nan=True)
    assert np.isnan(got[:, gx == 0]).all()
    run = json.loads((out / f"{GRANULE}_fcls_run.json").read_text())
    assert run["output_grid"]["orthorectified_from_glt"] is True
    assert run["extra"]["acquisition_time"] == "2023-01-23T00:45:29Z"
    # the STAC item of a batch takes the acquisition time from the granule id, not "now"
    props = scene_properties(abundance, open_scene(path).attrs)
    assert props["datetime"] == "2023-01-23T00:45:29Z"
    assert props["datetime_source"] != "processing"
    assert props["proj:epsg"] == 4326


@pytest.mark.parametrize(("omit", "fragment"), [
    ("group:location", "no group 'location'"),
    ("group:sensor_band_parameters", "no group 'sensor_band_parameters'"),
    ("var:reflectance", "no variable 'reflectance'"),
    ("var:sensor_band_parameters/good_wavelengths",
     "no variable 'sensor_band_parameters/good_wavelengths'"),
    ("var:location/glt_y", "no variable 'location/glt_y'"),
    ("attr:geotransform", "no global attribute 'geotransform'"),
])
def test_broken_products_fail_in_one_line(tmp_path, omit, fragment):
    path, _ = write_emit_l2a(tmp_path, omit=(omit,))
    with pytest.raises(InvalidSceneError, match=fragment):
        open_scene(path)
    result = _run("info", path)
    assert result.exit_code == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: ") and fragment in lines[0]
    assert "Traceback" not in result.output


def test_not_netcdf_and_other_emit_products(tmp_path):
    junk = tmp_path / f"{GRANULE}.nc"
    junk.write_bytes(b"CDF\x01 classic netCDF-3 is not what EMIT ships")
    with pytest.raises(InvalidSceneError, match="not a readable NetCDF-4/HDF5 file"):
        open_scene(junk)
    path, _ = write_emit_l2a(tmp_path, name="EMIT_L2A_MASK_001_20230123T004529_2302216_001")
    with pytest.raises(UnsupportedFormatError, match="L2A MASK product"):
        open_scene(path)


def test_glt_outside_the_sensor_grid_is_refused(product, tmp_path):
    path, arrays = product
    with h5netcdf.File(path, "a") as f:
        gx = f["location"].variables["glt_x"]
        bad = np.array(gx[...])
        bad[bad > 0] = COLS + 5
        gx[...] = bad
    cube = open_scene(path, chunks=16)
    result = xr.Dataset(
        {"abundance": (("endmember", "y", "x"),
                       da.zeros((1, ROWS, COLS), chunks=16, dtype="float32")),
         "reconstruction_rmse": (("y", "x"), da.zeros((ROWS, COLS), chunks=16,
                                                      dtype="float32")),
         "endmember_spectrum": (("endmember", "band"), np.ones((1, NB), "float32"))},
        coords={"endmember": ["a"], "band": np.arange(1, NB + 1),
                "wavelength": ("band", arrays["wavelength"])},
        attrs={"glt": cube.attrs["glt"]},
    )
    with pytest.raises(InvalidSceneError, match="point outside the 12 x 10 sensor grid"):
        write_outputs(result, tmp_path / "out", GRANULE, "test")
    assert not any((tmp_path / "out").glob("*.tif"))


@pytest.mark.slow
def test_real_emit_scene_as_netcdf_matches_the_envi_reader(shared_data, tmp_path):
    """The real EMIT reflectance (10 x 10 x 285, JPL ENVI delivery of SpectralUnmixing.jl)
    repackaged in the LP DAAC NetCDF layout: same cube as the ENVI reader (285 real band
    centres, the product's 41 bad bands), and ``unmix`` on the NetCDF writes exactly the ENVI
    run's sensor-geometry abundances looked up through the GLT."""
    hdr = shared_data / "scenes" / "emit_unmix_ex" / "emit20250324t221005_jpl_unmix_ex.hdr"
    envi = open_scene(hdr, chunks=16)
    cube = envi.values  # (band, y, x), NaN at the ignore value
    nb, rows, cols = cube.shape
    gx, gy = rotated_glt(rows, cols, angle_deg=-20.0, step=0.8, seed=1)
    path = tmp_path / "EMIT_L2A_RFL_001_20250324T221005_2508315_004.nc"
    refl = np.nan_to_num(cube.transpose(1, 2, 0), nan=-9999.0).astype("float32")
    with h5netcdf.File(path, "w") as f:
        f.dimensions = {"downtrack": rows, "crosstrack": cols, "bands": nb,
                        "ortho_y": gx.shape[0], "ortho_x": gx.shape[1]}
        f.create_variable("reflectance", ("downtrack", "crosstrack", "bands"), "f4",
                          data=refl, fillvalue=np.float32(-9999.0))
        g = f.create_group("sensor_band_parameters")
        g.create_variable("wavelengths", ("bands",), "f4", data=envi["wavelength"].values)
        g.create_variable("fwhm", ("bands",), "f4", data=envi["fwhm"].values)
        g.create_variable("good_wavelengths", ("bands",), "i4",
                          data=envi["good_band"].values.astype("int32"))
        g = f.create_group("location")
        g.create_variable("glt_x", ("ortho_y", "ortho_x"), "i4", data=gx)
        g.create_variable("glt_y", ("ortho_y", "ortho_x"), "i4", data=gy)
        f.attrs["geotransform"] = np.array(GT)
        f.attrs["spatial_ref"] = CRS.from_epsg(4326).to_wkt()
    nc = open_scene(path, chunks=16)
    assert nc.attrs["acquisition_time"] == "2025-03-24T22:10:05Z"
    assert int((~nc["good_band"].values).sum()) == 41
    np.testing.assert_allclose(nc["wavelength"].values, envi["wavelength"].values, rtol=1e-6)
    np.testing.assert_array_equal(nc.values, cube)
    runs = {}
    for name, scene in (("envi", hdr), ("nc", path)):
        result = _run("unmix", scene, "-m", "fcls", "-k", "3", "--seed", "0", "-o",
                      tmp_path / name, "-q")
        assert result.exit_code == 0, result.output
        (tif,) = (tmp_path / name).glob("*_abundance.tif")
        with rasterio.open(tif) as src:
            runs[name] = (src.read(), src.crs, src.transform)
    sensor, _, _ = runs["envi"]
    ortho, crs, transform = runs["nc"]
    assert crs.to_epsg() == 4326 and transform.almost_equals(Affine.from_gdal(*GT))
    np.testing.assert_allclose(ortho, ortho_lookup(sensor, gx, gy), rtol=1e-6, atol=1e-7)
