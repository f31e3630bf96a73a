"""Object naming and artifacts: pseudonymous names only, reproducible archives, clean sidecars."""

from __future__ import annotations

import json
import sys
import tarfile
from pathlib import Path

import pytest

from sendit_worker.destinations import layouts
from sendit_worker.destinations.errors import DeliveryError
from sendit_worker.destinations.image import DeidentifiedImage, ImageMetadata


def _image(tmp_path: Path, sop: str, **meta: str) -> DeidentifiedImage:
    path = tmp_path / f"{sop}.dcm"
    path.write_bytes(sop.encode() * 10)
    metadata = {"patient": "P7Q2", "study": "2.25.1", "series": "2.25.2", "sop": sop, **meta}
    return DeidentifiedImage(path, path.stat().st_size, ImageMetadata.of(metadata))


def test_dicom_names_come_from_pseudonymous_ids_only(tmp_path: Path) -> None:
    [a] = layouts.dicom("research/x", [_image(tmp_path, "2.25.3")])
    assert a.name == "research/x/P7Q2/2.25.1/2.25.2/2.25.3.dcm"
    [b] = layouts.dicom("", [_image(tmp_path, "2.25.3")])
    assert b.name == "P7Q2/2.25.1/2.25.2/2.25.3.dcm"


@pytest.mark.parametrize("patient", ["Doe^John", "a/b", "", None, "../x", "name with space"])
def test_a_name_that_is_not_a_pseudonym_is_refused(tmp_path: Path, patient) -> None:
    with pytest.raises(DeliveryError, match="patient"):
        layouts.dicom("", [_image(tmp_path, "2.25.3", patient=patient)])


def test_tar_gz_is_reproducible_and_lists_every_image(tmp_path: Path) -> None:
    images = [_image(tmp_path, f"2.25.{n}") for n in (9, 4, 7)]
    [first] = layouts.tar_gz("p", images, tmp_path / "w1")
    [second] = layouts.tar_gz("p", list(reversed(images)), tmp_path / "w2")
    assert first.name == "p/P7Q2/2.25.1/2.25.2.tar.gz"
    assert first.path.read_bytes() == second.path.read_bytes()
    with tarfile.open(first.path) as tar:
        assert tar.getnames() == ["2.25.4.dcm", "2.25.7.dcm", "2.25.9.dcm"]
        assert tar.extractfile("2.25.7.dcm").read() == images[2].path.read_bytes()
    where = layouts.locations("bkt", [first])
    assert where["2.25.7"] == ("gs://bkt/p/P7Q2/2.25.1/2.25.2.tar.gz", "2.25.7.dcm")


def test_sidecar_keeps_acquisition_fields_only() -> None:
    sidecar = {
        "EchoTime": 0.02,
        "Modality": "MR",
        "InstitutionName": "Springfield General Hospital",
        "AcquisitionDateTime": "2020-01-01T10:00:00",
        "PatientName": "Doe^John",
        "SeriesInstanceUID": "1.2.3",
        "StudyDescription": "CT chest for Doe",
        "DeviceSerialNumber": "12345",
    }
    assert layouts.strip_sidecar(sidecar) == {"EchoTime": 0.02, "Modality": "MR"}


def test_nifti_volume_and_stripped_sidecar(deidentified, tmp_path: Path) -> None:
    _, series = deidentified
    mr = next(s for s in series if s[0].metadata.modality == "MR" and len(s) > 1)
    artifacts = layouts.nifti("n", mr, tmp_path / "work")
    names = sorted(a.name for a in artifacts)
    base = layouts.series_prefix("n", mr[0].metadata)
    assert f"{base}/series.nii.gz" in names and f"{base}/series.json" in names
    sidecar = json.loads(next(a for a in artifacts if a.name.endswith(".json")).path.read_text())
    assert set(sidecar) <= layouts.SIDECAR_KEEP
    assert sidecar["Modality"] == "MR"
    again = layouts.nifti("n", mr, tmp_path / "work2")
    assert [a.path.read_bytes() for a in artifacts] == [a.path.read_bytes() for a in again]


def test_dcm2niix_is_found_beside_the_interpreter_when_not_on_path(monkeypatch) -> None:
    monkeypatch.setenv("PATH", "/nonexistent")
    assert Path(layouts.dcm2niix_binary()).parent == Path(sys.executable).parent
