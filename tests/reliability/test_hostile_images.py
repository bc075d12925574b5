"""Corrupt and hostile images: each is refused with the file and the reason, cheaply.

A forged header must not size an allocation: the readers check the claimed size against
the voxel budget and the file before reading a voxel. Each forged file is also read in a
fresh process whose address space may grow by at most 200 MB: a reader that allocated what
the header claims would fail there with MemoryError (a control shows the limit bites).
"""

from __future__ import annotations

import gzip
import os
import struct
import subprocess
import sys
import zlib
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from fracrisk.imaging.io import ImageReadError, load_ct, load_radiograph


def _forged_nifti(path: Path, shape: tuple[int, ...], *, zooms=(1.0, 1.0, 1.0), payload=0):
    """A NIfTI header claiming ``shape`` int16 voxels, followed by ``payload`` bytes only."""
    header = nib.Nifti1Header()
    header.set_data_dtype(np.int16)
    header.set_data_shape(shape)
    header.set_zooms(zooms[: len(shape)])
    header.set_sform(np.diag([*zooms, 1.0]), code=1)
    header["vox_offset"] = 352
    raw = header.binaryblock + b"\x00" * 4 + b"\x00" * payload
    if path.suffix == ".gz":
        raw = gzip.compress(raw)
    path.write_bytes(raw)
    return path


def _volume(path: Path, data: np.ndarray, zooms=(1.0, 1.0, 1.0)) -> Path:
    affine = np.diag([*zooms, 1.0]) if len(zooms) == 3 else np.eye(4)
    nib.save(nib.Nifti1Image(data, affine), str(path))
    return path


_BUDGET_MB = 200


def _under_memory_budget(code: str) -> str:
    """Run ``code`` in a fresh interpreter allowed ``_BUDGET_MB`` more address space.

    The limit (``RLIMIT_AS``, set after the imports) makes any allocation beyond the budget
    fail with MemoryError, so a reader that sized an allocation from a forged header cannot
    pass. Returns ``"refused: <message>"``, ``"MemoryError"`` or ``"loaded"``.
    """
    script = (
        "import resource\n"
        "from fracrisk.imaging.io import load_ct, load_radiograph, ImageReadError\n"
        "import monai.data, nibabel, scipy.ndimage, PIL.Image  # the readers' lazy imports\n"
        "with open('/proc/self/status') as fh:\n"
        "    vm = next(int(l.split()[1]) for l in fh if l.startswith('VmSize')) * 1024\n"
        f"limit = vm + {_BUDGET_MB} * 2**20\n"
        "hard = resource.getrlimit(resource.RLIMIT_AS)[1]\n"
        "resource.setrlimit(resource.RLIMIT_AS, (limit, hard))\n"
        "try:\n"
        f"    {code}\n"
        "    print('loaded')\n"
        "except ImageReadError as err:\n"
        "    print('refused: ' + str(err))\n"
        "except MemoryError:\n"
        "    print('MemoryError')\n"
    )
    env = {**os.environ, "OMP_NUM_THREADS": "1", "NUMBA_NUM_THREADS": "1"}
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=120, env=env
    )
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout.strip().splitlines()[-1]


def test_the_memory_budget_stops_a_real_large_allocation(tmp_path):
    """Control: a genuine 400^3 volume (128 MB of int16, 256 MB as float32) exceeds it."""
    path = _volume(tmp_path / "real.nii", np.ones((400, 400, 400), np.int16))
    # the reader wraps it: "... unreadable or truncated (MemoryError)"
    assert "MemoryError" in _under_memory_budget(f"load_ct({str(path)!r}, spacing=None)")
    small = _volume(tmp_path / "small.nii", np.ones((64, 64, 64), np.int16))
    assert _under_memory_budget(f"load_ct({str(small)!r}, spacing=None)") == "loaded"


@pytest.mark.parametrize(
    ("shape", "suffix"),
    [((1000, 1000, 500), ".nii"), ((1000, 1000, 500), ".nii.gz"), ((2000, 2000, 2000), ".nii")],
)
def test_header_claimed_size_costs_no_memory(tmp_path, shape, suffix):
    path = _forged_nifti(tmp_path / f"forged{suffix}", shape, payload=62)
    with pytest.raises(ImageReadError, match=str(path.name)) as caught:
        load_ct(path)
    assert "claims" in str(caught.value)
    outcome = _under_memory_budget(f"load_ct({str(path)!r})")
    print(f"{path.name} claiming {shape} under a {_BUDGET_MB} MB budget: {outcome[:60]}")
    assert outcome.startswith("refused: ") and "claims" in outcome


def test_truncated_volume_is_refused(tmp_path):
    path = _volume(tmp_path / "ct.nii", np.zeros((40, 40, 40), np.int16))
    path.write_bytes(path.read_bytes()[: 352 + 40 * 40 * 20 * 2])
    with pytest.raises(ImageReadError, match="ct.nii.*claims 40 x 40 x 40 voxels.*truncated"):
        load_ct(path)


def test_zero_size_file_is_refused(tmp_path):
    path = tmp_path / "empty.nii.gz"
    path.write_bytes(b"")
    with pytest.raises(ImageReadError, match="empty.nii.gz"):
        load_ct(path)


def test_nan_volume_is_refused(tmp_path):
    data = np.zeros((16, 16, 16), np.float32)
    data[3, 4, 5] = np.nan
    with pytest.raises(ImageReadError, match="NaN"):
        load_ct(_volume(tmp_path / "nan.nii.gz", data))


def test_wrong_dimension_is_refused(tmp_path):
    with pytest.raises(ImageReadError, match="2-D image"):
        load_ct(_volume(tmp_path / "flat.nii.gz", np.zeros((32, 32), np.float32), (1.0, 1.0)))


@pytest.mark.parametrize("zoom", [25.0, 0.001])
def test_implausible_spacing_is_refused_before_resampling(tmp_path, zoom):
    """25 mm voxels would resample to ~16 GB; 0.001 mm ones would collapse to one voxel."""
    path = _volume(tmp_path / "ct.nii.gz", np.zeros((64, 64, 64), np.int16), (zoom,) * 3)
    with pytest.raises(ImageReadError, match=r"voxel size .* is not a CT's"):
        load_ct(path)


def test_resampling_beyond_the_budget_is_refused(tmp_path, monkeypatch):
    import fracrisk.imaging.io as io

    monkeypatch.setattr(io, "MAX_VOXELS", 100_000)
    path = _volume(tmp_path / "ct.nii.gz", np.zeros((32, 32, 32), np.int16), (2.0, 2.0, 2.0))
    with pytest.raises(ImageReadError, match="resampling .* would make 64 x 64 x 64"):
        load_ct(path)


def _png(width: int, height: int, rows: int) -> bytes:
    def chunk(kind: bytes, body: bytes) -> bytes:
        crc = zlib.crc32(kind + body) & 0xFFFFFFFF
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", crc)

    raw = b"".join(b"\x00" + b"\x00" * width for _ in range(rows))
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", ihdr)
        + chunk(b"IDAT", zlib.compress(raw))
        + chunk(b"IEND", b"")
    )


def test_png_claiming_100_megapixels_is_refused_unread(tmp_path):
    path = tmp_path / "bomb.png"
    path.write_bytes(_png(10_000, 10_000, 10))
    assert path.stat().st_size < 400
    with pytest.raises(ImageReadError, match="claims 10000 x 10000"):
        load_radiograph(path)
    outcome = _under_memory_budget(f"load_radiograph({str(path)!r})")
    print(f"PNG claiming 10000 x 10000 under a {_BUDGET_MB} MB budget: {outcome[:60]}")
    assert outcome.startswith("refused: ") and "claims 10000 x 10000" in outcome


def test_truncated_png_is_refused_not_zero_filled(tmp_path):
    path = tmp_path / "short.png"
    path.write_bytes(_png(1200, 1500, 10))
    with pytest.raises(ImageReadError, match="1500 rows.*10 complete row"):
        load_radiograph(path)
    full = tmp_path / "full.png"
    full.write_bytes(_png(120, 150, 150))
    assert load_radiograph(full).image.shape == (150, 120)  # the check passes whole images


def _dicom_slice(path: Path, z: int, *, patient: str, series: str, study: str) -> None:
    from pydicom.dataset import FileDataset, FileMetaDataset
    from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian, generate_uid

    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = CTImageStorage
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = FileDataset(str(path), {}, file_meta=meta, preamble=b"\0" * 128)
    ds.SOPClassUID, ds.SOPInstanceUID = CTImageStorage, meta.MediaStorageSOPInstanceUID
    ds.Modality, ds.PatientID = "CT", patient
    ds.SeriesInstanceUID, ds.StudyInstanceUID = series, study
    ds.Rows = ds.Columns = 8
    ds.PixelSpacing, ds.SliceThickness = [1.0, 1.0], 1.0
    ds.ImagePositionPatient = [0.0, 0.0, float(z)]
    ds.ImageOrientationPatient = [1.0, 0.0, 0.0, 0.0, 1.0, 0.0]
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 1
    ds.RescaleSlope, ds.RescaleIntercept = 1, 0
    ds.PixelData = np.full((8, 8), z, np.int16).tobytes()
    ds.save_as(str(path), enforce_file_format=True)


def test_foreign_dicom_slice_with_the_same_series_uid_is_refused(tmp_path):
    series, study = "1.2.826.0.1.1", "1.2.826.0.1.2"
    folder = tmp_path / "series"
    folder.mkdir()
    for z in range(6):
        _dicom_slice(folder / f"s{z}.dcm", z, patient="P001", series=series, study=study)
    assert load_ct(folder, spacing=None).volume_hu.shape[0] == 6
    _dicom_slice(folder / "s6.dcm", 6, patient="P999", series=series, study=study)
    with pytest.raises(ImageReadError, match=r"2 patients \(PatientID 'P001' \(6 file"):
        load_ct(folder, spacing=None)


def test_escaping_manifest_path_is_a_bad_row_never_read(tmp_path):
    """A manifest path that leaves the image root is refused with its row (issue 14)."""
    import pandas as pd

    from fracrisk.data import Cohort, ImageCohortDataset

    root = tmp_path / "images"
    root.mkdir()
    outside = tmp_path / "secret.nii.gz"
    _volume(outside, np.zeros((8, 8, 8), np.int16))
    df = pd.DataFrame(
        {"time": [1.0, 2.0], "event": [1, 0], "hip_ct_path": ["../secret.nii.gz", "ok.nii.gz"]}
    )
    _volume(root / "ok.nii.gz", np.zeros((8, 8, 8), np.int16))
    cohort = Cohort(df, image_cols=["hip_ct_path"], image_root=root)
    with pytest.raises(ValueError, match=r"secret.nii.gz: the path resolves outside .*\(row 0,"):
        ImageCohortDataset(
            cohort,
            "drr",
            covariates=[],
            confine_to_root=True,
            on_error="raise",
            cache_dir=tmp_path / "cache",
        )


SKIP_CONFIG = """
cohort: {path: spine.parquet, on_error: skip}
split: {method: stratified, test_size: 0.3, seed: 0}
models:
  - {name: CoxPH, type: coxph, covariates: [age, sex, bmi]}
  - name: images + clinical
    type: image_survival
    covariates: [age, sex]
    params:
      encoder: vertebral_patches
      encoder_kwargs: {backbone: resnet10t, pooling: mean}
      image_options: {size: [32, 32]}
      max_epochs: 1
      batch_size: 32
      progress: false
evaluation: {horizons: [2, 4], n_boot: 20, subgroups: false}
out: run
"""


@pytest.mark.slow
@pytest.mark.filterwarnings("ignore:.*resamples left the metric undefined")  # 47 test patients
def test_skip_policy_trains_on_and_lists_the_skipped_files_in_the_report(tmp_path, capsys):
    """``on_error: skip``: the run goes on without the bad images and names each of them."""
    import json

    import pandas as pd

    from fracrisk.cli import main
    from fracrisk.simulate import cohort

    simulated = cohort(160, preset="kong2022", seed=3, images=("spine",), out_dir=tmp_path / "img")
    paths = simulated.df["spine_xray_path"]
    truncated, empty, absent = (Path(paths.iloc[k]) for k in (4, 40, 90))
    truncated.write_bytes(truncated.read_bytes()[:300])
    empty.write_bytes(b"")
    absent.unlink()
    simulated.save(tmp_path / "spine.parquet")
    config = tmp_path / "run.yaml"
    config.write_text(SKIP_CONFIG)

    # The default policy stops at the first bad file and names it; no run is left behind.
    config.write_text(SKIP_CONFIG.replace(", on_error: skip", ""))
    assert main(["fit", "--config", str(config), "--no-progress"]) == 2
    assert truncated.name in capsys.readouterr().err
    assert not (tmp_path / "run").exists()

    config.write_text(SKIP_CONFIG)
    assert main(["fit", "--config", str(config), "--no-progress"]) == 0
    run = tmp_path / "run"
    left_out = pd.read_csv(run / "left_out.csv")
    bad_ids = {str(simulated.df["patient_id"].iloc[k]) for k in (4, 40, 90)}
    assert set(left_out["patient_id"].astype(str)) == bad_ids
    assert set(left_out["found_by"]) == {"images + clinical"}
    assert {Path(p).name for p in left_out["path"]} == {truncated.name, empty.name, absent.name}
    assert all(isinstance(r, str) and r for r in left_out["reason"])
    info = json.loads((run / "run.json").read_text())
    assert info["n_left_out"] == 3 and info["n_train"] + info["n_test"] == 160 - 3
    report = (run / "report.html").read_text()
    assert "Patients left out" in report
    assert all(name in report for name in (truncated.name, empty.name, absent.name))
    assert "## Patients left out (3)" in (run / "report.md").read_text()
    # Every model was trained and tested without them, and the saved model keeps its own
    # image options (not the run's temporary cache).
    evaluation = json.loads((run / "evaluation.json").read_text())
    assert {r["model"] for r in evaluation["discrimination"]} >= {"CoxPH", "images + clinical"}
    saved = json.loads((run / "models" / "images_clinical" / "config.json").read_text())
    assert "cache_dir" not in json.dumps(saved)
