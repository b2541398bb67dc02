"""Synthesise small DICOM series with known geometry for the tests.

The truth is built here, independently of medsr: an LPS affine from direction cosines,
spacings and an origin, and one single-frame MR file per slice, with scrambled
InstanceNumbers, random file names, int16 pixels and a RescaleSlope/Intercept. The
patient identifiers are fixed strings the anonymisation and no-leak tests look for.
"""

from __future__ import annotations

import secrets
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import rotations
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

MR_IMAGE = "1.2.840.10008.5.1.4.1.1.4"
PATIENT_NAME = "Doe^Janet"
PATIENT_ID = "PID-8675309"
PATIENT_BIRTH = "19610412"


def rotation(deg_x: float, deg_y: float, deg_z: float = 0.0) -> np.ndarray:
    """Rz @ Ry @ Rx for angles in degrees."""
    return rotations.rotation(*np.deg2rad([deg_x, deg_y, deg_z]))


def truth_affine_lps(R: np.ndarray, pixel_spacing: Sequence[float], slice_spacing: float,
                     origin: Sequence[float]) -> np.ndarray:
    """[row_cos*col_spacing, col_cos*row_spacing, normal*slice_spacing, origin] with
    row_cos, col_cos = R[:, 0], R[:, 1] and PixelSpacing = [row, column] spacing."""
    A = np.eye(4)
    A[:3, 0] = R[:, 0] * pixel_spacing[1]
    A[:3, 1] = R[:, 1] * pixel_spacing[0]
    A[:3, 2] = np.cross(R[:, 0], R[:, 1]) * slice_spacing
    A[:3, 3] = origin
    return A


# The header every synthetic slice shares, as (keyword, value) rows; the private
# Siemens-CSA-like tags are (tag, VR, value) rows.
_SHARED = (
    ("SpecificCharacterSet", "ISO_IR 100"), ("SOPClassUID", MR_IMAGE), ("Modality", "MR"),
    ("PatientName", PATIENT_NAME), ("PatientID", PATIENT_ID),
    ("PatientBirthDate", PATIENT_BIRTH), ("PatientSex", "F"),
    ("InstitutionName", "St Elsewhere Hospital"), ("ReferringPhysicianName", "Ehrlich^Victor"),
    ("StudyDate", "20240102"), ("StudyTime", "101010"), ("StudyID", "S1"),
    ("AccessionNumber", "ACC123"), ("ImageType", ["ORIGINAL", "PRIMARY", "M", "ND"]),
    ("ScanningSequence", "SE"), ("SequenceVariant", "NONE"), ("ScanOptions", ""),
    ("MRAcquisitionType", "2D"), ("EchoTime", "12"), ("RepetitionTime", "500"),
    ("EchoTrainLength", "1"), ("PositionReferenceIndicator", ""),
    ("WindowCenter", "100"), ("WindowWidth", "400"),
)
_PRIVATE = ((0x00291010, "OB", b"private-secret"), (0x00290010, "LO", "SIEMENS CSA HEADER"))
# int16 greyscale pixels
_PIXEL_FORMAT = (("SamplesPerPixel", 1), ("PhotometricInterpretation", "MONOCHROME2"),
                 ("BitsAllocated", 16), ("BitsStored", 16), ("HighBit", 15),
                 ("PixelRepresentation", 1))


def base_dataset(study_uid: str, series_uid: str, frame_uid: str, *,
                 series_number: int = 7, description: str = "synthetic oblique") -> Dataset:
    ds = Dataset()
    ds.update(dict(_SHARED))
    ds.update({"StudyInstanceUID": study_uid, "SeriesInstanceUID": series_uid,
               "FrameOfReferenceUID": frame_uid, "SeriesNumber": series_number,
               "SeriesDescription": description})
    for tag, vr, value in _PRIVATE:
        ds.add_new(tag, vr, value)
    return ds


def _save(ds: Dataset, path: Path) -> None:
    """Write ``ds`` as a Part 10 file (explicit VR little endian)."""
    ds.file_meta = FileMetaDataset()
    ds.file_meta.update({"MediaStorageSOPClassUID": ds.SOPClassUID,
                         "MediaStorageSOPInstanceUID": ds.SOPInstanceUID,
                         "TransferSyntaxUID": ExplicitVRLittleEndian})
    ds.save_as(path, enforce_file_format=True)


def write_series(out_dir: Path, stored: np.ndarray, A_lps: np.ndarray, *,
                 slope: float = 1.0, intercept: float = 0.0, ks: Sequence[float] | None = None,
                 study_uid: str | None = None, series_uid: str | None = None,
                 frame_uid: str | None = None, series_number: int = 7,
                 description: str = "synthetic oblique", rng: np.random.Generator | None = None
                 ) -> dict:
    """Write ``stored`` (I, J, K) int16 as single-frame files, slice k at A_lps @ (0,0,k).

    ``ks`` lists the slice indices to write (omit one for a gap, repeat one for a
    duplicate position). Files get random names and scrambled InstanceNumbers.
    """
    rng = rng or np.random.default_rng(0)
    out_dir.mkdir(parents=True, exist_ok=True)
    study_uid = study_uid or generate_uid()
    series_uid = series_uid or generate_uid()
    frame_uid = frame_uid or generate_uid()
    ks = list(range(stored.shape[2])) if ks is None else list(ks)
    numbers = rng.permutation(len(ks)) + 1
    col_spacing = np.linalg.norm(A_lps[:3, 0])
    row_spacing = np.linalg.norm(A_lps[:3, 1])
    row_cos = A_lps[:3, 0] / col_spacing
    col_cos = A_lps[:3, 1] / row_spacing
    sop_uids = []
    for n, k in enumerate(ks):
        ds = base_dataset(study_uid, series_uid, frame_uid, series_number=series_number,
                          description=description)
        ipp = A_lps[:3, :] @ np.array([0.0, 0.0, k, 1.0])
        plane = stored[:, :, int(k)].T.astype("<i2")  # (rows, cols)
        ds.update(dict(_PIXEL_FORMAT))
        ds.update({
            "SOPInstanceUID": generate_uid(), "InstanceNumber": int(numbers[n]),
            "ImagePositionPatient": [f"{v:.6f}" for v in ipp],
            "ImageOrientationPatient": [f"{v:.8f}" for v in np.concatenate([row_cos, col_cos])],
            "PixelSpacing": [f"{row_spacing:.6f}", f"{col_spacing:.6f}"],
            "SliceThickness": f"{np.linalg.norm(A_lps[:3, 2]):.6f}",
            "Rows": stored.shape[1], "Columns": stored.shape[0],
            "RescaleSlope": f"{slope:g}", "RescaleIntercept": f"{intercept:g}",
            "PixelData": np.ascontiguousarray(plane).tobytes(),
        })
        sop_uids.append(ds.SOPInstanceUID)
        _save(ds, out_dir / secrets.token_hex(6))
    return {"study_uid": study_uid, "series_uid": series_uid, "frame_uid": frame_uid,
            "sop_uids": sop_uids}


def oblique_case(shape: tuple[int, int, int] = (12, 10, 6), seed: int = 0) -> dict:
    """An oblique geometry (20 deg about x, 20 deg about y, 10 about z), anisotropic
    spacing, int16 data with slope 0.5 and intercept -100."""
    rng = np.random.default_rng(seed)
    R = rotation(20, 20, 10)
    A = truth_affine_lps(R, pixel_spacing=(0.9, 0.8), slice_spacing=3.0,
                         origin=(-40.5, 22.25, 13.0))
    stored = rng.integers(-500, 2000, size=shape).astype(np.int16)
    return {"A_lps": A, "stored": stored, "slope": 0.5, "intercept": -100.0,
            "values": stored * 0.5 - 100.0, "rng": rng}


def write_non_image(path: Path, study_uid: str) -> None:
    """A pixel-less DICOM object (a Basic Text SR-like header) in the directory."""
    ds = Dataset()
    ds.update({"SOPClassUID": "1.2.840.10008.5.1.4.1.1.88.11",  # Basic Text SR
               "SOPInstanceUID": generate_uid(), "Modality": "SR",
               "StudyInstanceUID": study_uid, "SeriesInstanceUID": generate_uid(),
               "PatientName": PATIENT_NAME})
    _save(ds, path)
