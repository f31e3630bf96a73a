"""A de-identified image, as destinations see it: its file and its searchable metadata.

Everything here is read from the de-identified dataset (new UIDs, pseudonyms, shifted dates),
so nothing in it can identify anyone; the pool's per-file result carries one, and delivery,
staging and BigQuery rows depend on this type only.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class ImageMetadata:
    patient: str | None  # the pseudonymous PatientID
    study: str | None  # new StudyInstanceUID
    series: str | None
    sop: str | None
    sop_class: str | None
    modality: str | None
    body_part: str | None
    study_date: str | None  # shifted by the patient's jitter
    patient_age: str | None
    patient_sex: str | None
    rows: int | None
    columns: int | None
    manufacturer_model: str | None
    series_description: str | None
    header: str | None = None  # the de-identified header as DICOM JSON, when BigQuery wants it

    def as_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def of(cls, data: dict[str, Any]) -> ImageMetadata:
        return cls(**{f.name: data.get(f.name) for f in dataclasses.fields(cls)})


# The dataset keyword behind each field (header aside).
KEYWORDS: dict[str, str] = {
    "patient": "PatientID",
    "study": "StudyInstanceUID",
    "series": "SeriesInstanceUID",
    "sop": "SOPInstanceUID",
    "sop_class": "SOPClassUID",
    "modality": "Modality",
    "body_part": "BodyPartExamined",
    "study_date": "StudyDate",
    "patient_age": "PatientAge",
    "patient_sex": "PatientSex",
    "rows": "Rows",
    "columns": "Columns",
    "manufacturer_model": "ManufacturerModelName",
    "series_description": "SeriesDescription",
}


@dataclass(frozen=True)
class DeidentifiedImage:
    path: Path  # the de-identified file
    size: int
    metadata: ImageMetadata

    @property
    def sop(self) -> str:
        return str(self.metadata.sop)

    @property
    def series(self) -> str:
        return str(self.metadata.series)
