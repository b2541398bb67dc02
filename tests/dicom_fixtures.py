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
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

MR_IMAGE = "1.2.840.10008.5.1.4.1.1.4"
PATIENT_NAME = "Doe^Janet"
PATIENT_ID = "PID-8675309"
PATIENT_BIRTH = "19610412"


def rotation(deg_x: float, deg_y: float, deg_z: float = 0.0) -> np.ndarray:
    """Rz @ Ry @ Rx for angles in degrees."""
    ax, ay, az = np.deg2rad([deg_x, deg_y, deg_z])
    rx = np.array([[1, 0, 0], [0, np.cos(ax), -np.sin(ax)], [0, np.sin(ax), np.cos(ax)]])
    ry = np.array([[np.cos(ay), 0, np.sin(ay)], [0, 1, 0], [-np.sin(ay), 0, np.cos(ay)]])
    rz = np.array([[np.cos(az), -np.sin(az), 0], [np.sin(az), np.cos(az), 0], [0, 0, 1]])
    return rz @ ry @ rx


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


def base_dataset(study_uid: str, series_uid: str, frame_uid: str, *,
                 series_number: int = 7, description: str = "synthetic oblique") -> Dataset:
    ds = Dataset()
    ds.SpecificCharacterSet = "ISO_IR 100"
    ds.SOPClassUID = MR_IMAGE
    ds.Modality = "MR"
    ds.PatientName = PATIENT_NAME
    ds.PatientID = PATIENT_ID
    ds.PatientBirthDate = PATIENT_BIRTH
    ds.PatientSex = "F"
    ds.InstitutionName = "St Elsewhere Hospital"
    ds.ReferringPhysicianName = "Ehrlich^Victor"
    ds.StudyInstanceUID = study_uid
    ds.SeriesInstanceUID = series_uid
    ds.FrameOfReferenceUID = frame_uid
    ds.StudyDate = "20240102"
    ds.StudyTime = "101010"
    ds.StudyID = "S1"
    ds.AccessionNumber = "ACC123"
    ds.SeriesNumber = series_number
    ds.SeriesDescription = description
    ds.ImageType = ["ORIGINAL", "PRIMARY", "M", "ND"]
    ds.ScanningSequence = "SE"
    ds.SequenceVariant = "NONE"
    ds.ScanOptions = ""
    ds.MRAcquisitionType = "2D"
    ds.EchoTime = "12"
    ds.RepetitionTime = "500"
    ds.EchoTrainLength = "1"
    ds.PositionReferenceIndicator = ""
    ds.WindowCenter = "100"
    ds.WindowWidth = "400"
    ds.add_new(0x00291010, "OB", b"private-secret")  # a private tag (Siemens CSA-like)
    ds.add_new(0x00290010, "LO", "SIEMENS CSA HEADER")
    return ds


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
        ds.SOPInstanceUID = generate_uid()
        sop_uids.append(ds.SOPInstanceUID)
        ds.InstanceNumber = int(numbers[n])
        ipp = A_lps[:3, :] @ np.array([0.0, 0.0, k, 1.0])
        ds.ImagePositionPatient = [f"{v:.6f}" for v in ipp]
        ds.ImageOrientationPatient = [f"{v:.8f}" for v in np.concatenate([row_cos, col_cos])]
        ds.PixelSpacing = [f"{row_spacing:.6f}", f"{col_spacing:.6f}"]
        ds.SliceThickness = f"{np.linalg.norm(A_lps[:3, 2]):.6f}"
        ds.Rows, ds.Columns = stored.shape[1], stored.shape[0]
        ds.SamplesPerPixel = 1
        ds.PhotometricInterpretation = "MONOCHROME2"
        ds.BitsAllocated = 16
        ds.BitsStored = 16
        ds.HighBit = 15
        ds.PixelRepresentation = 1
        ds.RescaleSlope = f"{slope:g}"
        ds.RescaleIntercept = f"{intercept:g}"
        plane = stored[:, :, int(k)].T.astype("<i2")  # (rows, cols)
        ds.PixelData = np.ascontiguousarray(plane).tobytes()
        fm = FileMetaDataset()
        fm.MediaStorageSOPClassUID = ds.SOPClassUID
        fm.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
        fm.TransferSyntaxUID = ExplicitVRLittleEndian
        ds.file_meta = fm
        ds.save_as(out_dir / secrets.token_hex(6), enforce_file_format=True)
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
    ds.SOPClassUID = "1.2.840.10008.5.1.4.1.1.88.11"  # Basic Text SR
    ds.SOPInstanceUID = generate_uid()
    ds.Modality = "SR"
    ds.StudyInstanceUID = study_uid
    ds.SeriesInstanceUID = generate_uid()
    ds.PatientName = PATIENT_NAME
    fm = FileMetaDataset()
    fm.MediaStorageSOPClassUID = ds.SOPClassUID
    fm.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    fm.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.file_meta = fm
    ds.save_as(path, enforce_file_format=True)
