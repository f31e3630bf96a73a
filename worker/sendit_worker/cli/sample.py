"""`sendit sample`: a corpus of identified-looking DICOM folders made from pydicom's bundled files.

For trying Sendit, its tests and its benchmark, without real patient data. Every patient gets a
made-up name, ID, birth date, accession number and address, planted in the places real exports
carry them: top-level attributes, nested sequences, private blocks, descriptions, and the
folder names themselves. The images are marked ORIGINAL/PRIMARY with no burned-in annotation,
so deid's default filters let them through and the sample exercises the whole pipeline.

With `burned_in` (the command's default), each patient's first image has the patient's name,
ID and the study date burned into its pixels, as a scanner's overlay (the header says so), and
the last file is a scanned referral letter: the pixel stage's two cases, text to blank and an
image that is text by nature, withheld. Tests and benchmarks leave it off (text-free files are
faster to de-identify).
"""

from __future__ import annotations

import copy
import io
import random
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pydicom
from PIL import Image, ImageDraw, ImageFont
from pydicom.data import get_testdata_file
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.sequence import Sequence
from pydicom.uid import ExplicitVRLittleEndian, SecondaryCaptureImageStorage, generate_uid

# Bundled with pydicom (no download): CT and MR in several transfer syntaxes, NM, US.
SOURCES = (
    "CT_small.dcm",  # explicit VR little endian
    "MR_small.dcm",  # explicit VR little endian
    "MR_small_implicit.dcm",  # implicit VR little endian
    "MR_small_bigendian.dcm",  # explicit VR big endian
    "MR_small_RLE.dcm",  # RLE lossless
    "MR_small_jp2klossless.dcm",  # JPEG 2000 lossless
    "JPEG2000.dcm",  # NM, JPEG 2000
    "ExplVR_BigEnd.dcm",  # US, big endian
)
FAMILY = ("Garcia", "Okafor", "Lindqvist", "Tanaka", "Moreau", "Kowalski", "Haddad", "Brennan")
GIVEN = ("Maria", "Chidi", "Astrid", "Haruto", "Elodie", "Piotr", "Layla", "Declan")
FIELD = 512  # a burned-in image: the scan in the middle of a black field, text in its margins


@dataclass(frozen=True)
class Patient:
    name: str
    patient_id: str
    birth_date: str
    accession: str
    address: str


def make_patient(n: int, rng: random.Random) -> Patient:
    family = f"{rng.choice(FAMILY)}{n:03d}x"
    given = rng.choice(GIVEN)
    return Patient(
        name=f"{family}^{given}",
        patient_id=f"MRN{rng.randrange(10**7, 10**8)}",
        birth_date=f"19{rng.randrange(30, 99)}{rng.randrange(1, 13):02d}{rng.randrange(1, 28):02d}",
        accession=f"ACC{rng.randrange(10**6, 10**7)}",
        address=f"{rng.randrange(1, 999)} Elm Street, Springfield",
    )


def identify(ds: Dataset, patient: Patient, study_uid: str, series_uid: str) -> None:
    """Plant the patient's identity everywhere a real export might carry it."""
    ds.PatientName = patient.name
    ds.PatientID = patient.patient_id
    ds.PatientBirthDate = patient.birth_date
    ds.PatientAddress = patient.address
    ds.AccessionNumber = patient.accession
    ds.InstitutionName = "Springfield General Hospital"
    ds.ReferringPhysicianName = "Hibbert^Julius"
    ds.OtherPatientIDs = patient.patient_id + "-OLD"
    ds.StudyDescription = f"CT chest for {patient.name.split('^')[0]}"
    ds.ImageComments = f"patient {patient.patient_id} tolerated well"
    ds.StudyInstanceUID = study_uid
    ds.SeriesInstanceUID = series_uid
    ds.SOPInstanceUID = generate_uid()
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    ds.ImageType = ["ORIGINAL", "PRIMARY", "AXIAL"]
    ds.BurnedInAnnotation = "NO"
    ds.Manufacturer = "Sendit Sample"
    ref = Dataset()
    ref.ReferencedSOPClassUID = ds.SOPClassUID
    ref.ReferencedSOPInstanceUID = ds.SOPInstanceUID
    ds.ReferencedImageSequence = Sequence([ref])
    request = Dataset()
    request.AccessionNumber = patient.accession
    request.RequestingPhysician = "Riviera^Nick"
    request.RequestedProcedureDescription = f"follow-up {patient.patient_id}"
    ds.RequestAttributesSequence = Sequence([request])
    block = ds.private_block(0x0011, "ACME HOSPITAL", create=True)
    block.add_new(0x01, "LO", patient.name)


@dataclass(frozen=True)
class Sample:
    files: int  # every file written
    patients: int  # patients the files belong to (no more than the files)
    burned_in: int = 0  # images with text in their pixels
    documents: int = 0  # scanned documents


def make_sample(
    out: Path,
    *,
    patients: int = 5,
    files: int = 40,
    seed: int = 7,
    sources=SOURCES,
    burned_in: bool = False,
) -> Sample:
    """Write `files` identified DICOM files for `patients` patients under `out`: what was made.
    Folders are named after the patient, as some exports do, so that a leak of a source folder
    name into the output would be caught."""
    rng = random.Random(seed)
    templates = [pydicom.dcmread(get_testdata_file(name)) for name in sources]
    people = [make_patient(n, rng) for n in range(patients)]
    studies = {p.patient_id: generate_uid() for p in people}
    texts = documents = 0
    for i in range(files):
        patient = people[i % patients]
        template_index = (i // patients) % len(templates)
        if burned_in and i == files - 1:
            ds, template_index = scanned_document(patient), -1
            documents += 1
        else:
            ds = copy.deepcopy(templates[template_index])
        series_uid = pydicom.uid.UID(
            generate_uid(entropy_srcs=[patient.patient_id, str(template_index)])
        )
        identify(ds, patient, studies[patient.patient_id], series_uid)
        if template_index < 0:
            ds.BurnedInAnnotation = "YES"  # the letter is all text (identify says NO)
        elif burned_in and i < patients:
            burn_in(ds, [patient.name.upper(), patient.patient_id, "2024-03-12 14:22"])
            texts += 1
        folder = out / patient.name.replace("^", "_") / f"{patient.accession}"
        folder.mkdir(parents=True, exist_ok=True)
        ds.save_as(folder / f"{patient.patient_id}_{i:05d}.dcm", enforce_file_format=True)
    return Sample(files, min(patients, files), texts, documents)


def burn_in(ds: Dataset, lines: list[str]) -> None:
    """Text burned into a monochrome image as a scanner does: the scan enlarged into the middle
    of a black field, lines of text in its corners at the image's brightest value. The pixels
    are written native (Explicit VR Little Endian); the header says there is text."""
    scan = np.asarray(ds.pixel_array)
    scale = max(1, (FIELD * 3 // 4) // max(scan.shape))
    scan = np.repeat(np.repeat(scan, scale, axis=0), scale, axis=1)
    field = np.full((FIELD, FIELD), scan.min(), dtype=scan.dtype)
    top, left = (FIELD - scan.shape[0]) // 2, (FIELD - scan.shape[1]) // 2
    field[top : top + scan.shape[0], left : left + scan.shape[1]] = scan
    mask = Image.new("L", (FIELD, FIELD))
    draw, size = ImageDraw.Draw(mask), 16
    for n, line in enumerate(lines[:-1]):
        draw.text((8, 6 + n * 21), line, fill=255, font=_font(size))
    draw.text((FIELD - 180, FIELD - 24), lines[-1], fill=255, font=_font(size))
    field[np.asarray(mask) > 127] = scan.max()
    ds.Rows, ds.Columns = field.shape
    ds.PixelData = field.astype(field.dtype.newbyteorder("<")).tobytes()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.BurnedInAnnotation = "YES"


def scanned_document(patient: Patient) -> Dataset:
    """A referral letter scanned into the patient's study: a Secondary Capture whose
    ConversionType SD (scanned document) says it is text by nature."""
    page = Image.new("L", (400, 520), 235)
    draw = ImageDraw.Draw(page)
    letter = [
        "Springfield General Hospital",
        "Radiology referral",
        "",
        f"Patient: {patient.name.replace('^', ', ')}",
        f"MRN: {patient.patient_id}",
        f"Born: {patient.birth_date}",
        f"Address: {patient.address}",
        f"Accession: {patient.accession}",
        "",
        "Please image the chest: cough",
        "for six weeks, no fever.",
        "",
        "Dr J. Hibbert",
    ]
    for n, line in enumerate(letter):
        draw.text((30, 30 + n * 30), line, fill=20, font=_font(16))
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.SOPClassUID = ds.file_meta.MediaStorageSOPClassUID = SecondaryCaptureImageStorage
    ds.Modality, ds.ConversionType = "OT", "SD"
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.Columns, ds.Rows = page.size
    ds.BitsAllocated = ds.BitsStored = 8
    ds.HighBit, ds.PixelRepresentation = 7, 0
    ds.PixelData = np.asarray(page, dtype=np.uint8).tobytes()
    return ds


def _font(size: int) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    """Pillow's own scalable font (no system font needed)."""
    return ImageFont.load_default(size=size)


def make_series(out: Path, sizes: list[int], *, patients: int = 5, seed: int = 7) -> int:
    """Small identified images (8x8 pixels, about 7 KB each) in series of the given sizes, for
    scale tests and benchmarks: 100,000 files are written in seconds. Series s belongs to
    patient s % patients (one study each); its files go in its own folder. Returns the count."""
    rng = random.Random(seed)
    people = [make_patient(n, rng) for n in range(patients)]
    studies = [generate_uid() for _ in people]
    template = pydicom.dcmread(get_testdata_file("CT_small.dcm"))
    template.Rows = template.Columns = 8
    template.PixelData = bytes(range(128))
    placeholder = "1.2.826.0.1.3680043.10.1999." + "9" * 24  # as long as every UID it stands for
    written = 0
    for s, size in enumerate(sizes):
        patient = people[s % patients]
        ds = copy.deepcopy(template)
        identify(ds, patient, studies[s % patients], generate_uid())
        ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = placeholder
        ds.ReferencedImageSequence[0].ReferencedSOPInstanceUID = placeholder
        buffer = io.BytesIO()
        ds.save_as(buffer, enforce_file_format=True)
        data = buffer.getvalue()
        folder = out / patient.name.replace("^", "_") / f"S{s:05d}"
        folder.mkdir(parents=True, exist_ok=True)
        for i in range(size):
            uid = f"{placeholder[:-24]}1{s:07d}{i:016d}"
            (folder / f"{i:06d}.dcm").write_bytes(data.replace(placeholder.encode(), uid.encode()))
            written += 1
    return written
