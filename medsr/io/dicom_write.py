"""Write a Volume as a derived DICOM series (one single-frame file per slice).

Every rule of DESIGN.md's DICOM section: patient/study modules, StudyInstanceUID,
FrameOfReferenceUID and orientation kept from the source header; new series and
instance UIDs; ImageType DERIVED\\SECONDARY with DerivationDescription and a
SourceImageSequence; per-slice position from the affine; Decimal Strings of at most 16
characters; SeriesDescription extended ("<original> SR medsr"); pixels stored as the
source stored them (PixelRepresentation, BitsAllocated/BitsStored, RescaleSlope/Intercept
kept; values beyond that range clipped and counted) unless ``dtype`` asks otherwise;
explicit VR little endian, written atomically. docs/dicom.md is the user's page.
"""

from __future__ import annotations

import copy
import datetime as _dt
import os
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pydicom
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.sequence import Sequence
from pydicom.uid import (
    PYDICOM_IMPLEMENTATION_UID,
    ExplicitVRLittleEndian,
    generate_uid,
)
from pydicom.valuerep import format_number_as_ds

from medsr.errors import OutputError, UserError
from medsr.geometry import ras_to_lps
from medsr.io.common import atomic_path, cast_to_dtype, check_output
from medsr.io.dicom_deid import Deidentifier
from medsr.volume import Volume

MR_IMAGE = "1.2.840.10008.5.1.4.1.1.4"
CT_IMAGE = "1.2.840.10008.5.1.4.1.1.2"
PET_IMAGE = "1.2.840.10008.5.1.4.1.1.128"
SECONDARY_CAPTURE = "1.2.840.10008.5.1.4.1.1.7"
# Enhanced / legacy-converted multi-frame classes -> the classic single-frame class.
_CLASSIC = {
    "1.2.840.10008.5.1.4.1.1.4.1": MR_IMAGE,   # Enhanced MR
    "1.2.840.10008.5.1.4.1.1.4.4": MR_IMAGE,   # Legacy Converted Enhanced MR
    "1.2.840.10008.5.1.4.1.1.2.1": CT_IMAGE,   # Enhanced CT
    "1.2.840.10008.5.1.4.1.1.2.2": CT_IMAGE,   # Legacy Converted Enhanced CT
    "1.2.840.10008.5.1.4.1.1.128.1": PET_IMAGE,  # Enhanced PET
    "1.2.840.10008.5.1.4.1.1.130": PET_IMAGE,  # Enhanced PET
}
_KNOWN_SINGLE = {MR_IMAGE, CT_IMAGE, PET_IMAGE, SECONDARY_CAPTURE,
                 "1.2.840.10008.5.1.4.1.1.20"}  # NM

# Attributes of the source header that are wrong for the new pixels or slice.
_STALE = (
    "SOPInstanceUID", "InstanceNumber", "ImagePositionPatient", "SliceLocation",
    "WindowCenter", "WindowWidth", "WindowCenterWidthExplanation", "VOILUTFunction",
    "VOILUTSequence", "ModalityLUTSequence", "SmallestImagePixelValue",
    "LargestImagePixelValue", "SmallestPixelValueInSeries", "LargestPixelValueInSeries",
    "PixelPaddingValue", "PixelPaddingRangeLimit", "PixelAspectRatio", "IconImageSequence",
    "SourceImageSequence", "DerivationCodeSequence", "DataSetTrailingPadding",
    "PlanarConfiguration", "NumberOfFrames", "ImagerPixelSpacing", "ImagesInAcquisition",
    "RedPaletteColorLookupTableDescriptor", "GreenPaletteColorLookupTableDescriptor",
    "BluePaletteColorLookupTableDescriptor", "RedPaletteColorLookupTableData",
    "GreenPaletteColorLookupTableData", "BluePaletteColorLookupTableData",
    "PaletteColorLookupTableUID", "PixelData", "FloatPixelData", "DoubleFloatPixelData",
    "RescaleSlope", "RescaleIntercept", "ImageOrientationPatient",
    "PixelSpacing", "SliceThickness", "SpacingBetweenSlices", "Rows", "Columns",
)

DEFAULT_DERIVATION = "Super-resolved by medsr: resampled onto a finer voxel grid"
DESCRIPTION_SUFFIX = "SR medsr"
DEFAULT_DESCRIPTION = "medsr super-resolution"  # when the source has no SeriesDescription
INTEGER_DTYPES = ("uint8", "int8", "uint16", "int16")  # what --dtype may ask of DICOM


def ds_str(x: float) -> str:
    """A valid Decimal String (<= 16 characters) for ``x``."""
    x = float(x)
    if x == 0.0:
        return "0"
    if x.is_integer() and abs(x) < 1e15:
        return str(int(x))
    short = repr(x)  # the shortest round-trip form, when it fits
    return short if len(short) <= 16 else format_number_as_ds(x)


# ---------------------------------------------------------------------------- intensities


def encode_intensities(data: np.ndarray) -> tuple[np.ndarray, str, str]:
    """Integer pixels and (slope, intercept) Decimal Strings with
    stored * slope + intercept == data up to quantisation; nothing is clipped.

    Integer-valued data that fits int16 (or uint16) is stored exactly with slope 1;
    anything else is spread over the int16 range.
    """
    data = np.asarray(data)
    if np.issubdtype(data.dtype, np.floating):
        bad = ~np.isfinite(data)
        if bad.any():
            warnings.warn(f"{int(bad.sum())} non-finite voxels written as 0", stacklevel=3)
            data = np.where(bad, 0, data)
    if data.size == 0:
        return data.astype(np.int16), "1", "0"
    lo, hi = float(data.min()), float(data.max())
    integral = (np.issubdtype(data.dtype, np.integer) or np.issubdtype(data.dtype, np.bool_)
                or bool(np.all(data == np.rint(data))))
    if integral:
        if -32768 <= lo and hi <= 32767:
            return np.rint(data).astype(np.int16), "1", "0"
        if 0 <= lo and hi <= 65535:
            return np.rint(data).astype(np.uint16), "1", "0"
    if hi == lo:
        inter = ds_str(lo)
        return np.zeros(data.shape, np.int16), "1", inter
    # The DS string keeps >= 10 significant digits: the 1e-9 margin keeps it >= the exact
    # slope, so [lo, hi] fits the int16 range; the clip only absorbs rounding.
    slope_s = ds_str((hi - lo) / 65534.0 * (1 + 1e-9))
    s = float(slope_s)
    inter_s = ds_str(lo + 32767.0 * s)
    b = float(inter_s)
    stored = np.rint((data.astype(np.float64) - b) / s)
    return np.clip(stored, -32768, 32767).astype(np.int16), slope_s, inter_s


def dicom_dtype(dtype: str | None) -> str | None:
    """``--dtype`` for DICOM output: an integer pixel type of :data:`INTEGER_DTYPES`,
    ``"float"`` for any float dtype (a 16-bit integer with a rescale that keeps precision)
    or None (the source's representation); anything else is a one-line UserError."""
    if dtype is None:
        return None
    try:
        name = np.dtype(dtype).name
    except TypeError:
        name = ""
    if name in INTEGER_DTYPES:
        return name
    if name.startswith("float"):
        return "float"
    raise UserError(f"DICOM output stores {', '.join(INTEGER_DTYPES[:-1])} or "
                    f"{INTEGER_DTYPES[-1]} pixels, or a float dtype (as 16-bit integers with a "
                    f"rescale that keeps precision); --dtype {dtype} is not possible")


def source_encoding(vol: Volume) -> tuple[np.dtype, int, float, float] | None:
    """(pixel dtype, BitsStored, slope, intercept) of the DICOM series ``vol`` came from;
    None when there is none to keep (not DICOM, float or colour pixels, or a rescale that
    differs between slices)."""
    info = vol.meta.get("dicom")
    src = info.get("template") if isinstance(info, dict) else None
    if src is None:
        return None
    stored = vol.meta.get("stored_dtype")
    if stored is not None and not np.issubdtype(np.dtype(stored), np.integer):
        return None
    try:
        alloc = int(src.get("BitsAllocated"))
        bits = int(src.get("BitsStored", alloc))
        signed = int(src.get("PixelRepresentation", 0))
        samples = int(src.get("SamplesPerPixel", 1) or 1)
    except (TypeError, ValueError):
        return None
    if alloc not in (8, 16, 32) or not 1 < bits <= alloc or signed not in (0, 1) \
            or samples != 1:
        return None
    if "rescale" in info:
        if info["rescale"] is None:
            return None
        slope, inter = (float(v) for v in info["rescale"])
    else:
        try:
            slope = float(src.get("RescaleSlope", 1) or 1)
            inter = float(src.get("RescaleIntercept", 0) or 0)
        except (TypeError, ValueError):
            return None
    return np.dtype(f"{'i' if signed else 'u'}{alloc // 8}"), bits, slope, inter


def encode_pixels(data: np.ndarray, dtype: str | None = None,
                  source: tuple[np.dtype, int, float, float] | None = None
                  ) -> tuple[np.ndarray, str, str, int]:
    """Grey values -> (stored integers, slope, intercept Decimal Strings, BitsStored).

    ``dtype`` None keeps the ``source`` encoding (:func:`source_encoding`); an integer
    ``dtype`` stores that type with the source's rescale (1, 0 without a source); "float"
    (or None without a source) fits a rescale to the values (:func:`encode_intensities`).
    Values outside the stored range after rescale are clipped, with a warning that counts
    them."""
    kind = dicom_dtype(dtype)
    if kind == "float" or (kind is None and source is None):
        stored, slope_s, inter_s = encode_intensities(data)
        return stored, slope_s, inter_s, stored.dtype.itemsize * 8
    if kind is None:
        pix, bits, slope, inter = source  # type: ignore[misc]
    else:
        pix = np.dtype(kind)
        bits = pix.itemsize * 8
        slope, inter = (source[2], source[3]) if source is not None else (1.0, 0.0)
    signed = np.issubdtype(pix, np.signedinteger)
    lo, hi = (-(2 ** (bits - 1)), 2 ** (bits - 1) - 1) if signed else (0, 2 ** bits - 1)
    slope_s, inter_s = ds_str(slope), ds_str(inter)
    s, b = float(slope_s), float(inter_s)
    values = np.asarray(data)
    if (s, b) != (1.0, 0.0):
        values = (values.astype(np.float64) - b) / s
    vlo, vhi = sorted((lo * s + b, hi * s + b))
    what = (f"DICOM {bits}-bit {'signed' if signed else 'unsigned'} pixel (RescaleSlope "
            f"{slope_s}, RescaleIntercept {inter_s}: values {vlo:g} to {vhi:g})")
    return cast_to_dtype(values, pix, bounds=(lo, hi), what=what), slope_s, inter_s, bits


# ---------------------------------------------------------------------------- geometry


def _frame_geometry(affine_ras: np.ndarray, n_slices: int) -> dict[str, Any]:
    """Orientation, spacings and per-slice positions (LPS) of a Volume's affine, with
    ``flip`` True when k runs against the slice normal (written reversed so that
    InstanceNumber follows the normal)."""
    A = ras_to_lps(affine_ras)
    a0, a1, a2 = A[:3, 0], A[:3, 1], A[:3, 2]
    col_spacing, row_spacing = float(np.linalg.norm(a0)), float(np.linalg.norm(a1))
    if col_spacing == 0 or row_spacing == 0:
        raise OutputError("cannot write DICOM: the affine has a zero voxel size in-plane")
    row_cos, col_cos = a0 / col_spacing, a1 / row_spacing
    if abs(float(np.dot(row_cos, col_cos))) > 1e-4:
        raise OutputError("cannot write DICOM: the in-plane axes of the affine are not "
                          "orthogonal (sheared grid)")
    normal = np.cross(row_cos, col_cos)
    step = float(np.dot(a2, normal))
    flip = step < 0
    if flip:
        A = A.copy()
        A[:3, 3] = A[:3, 3] + a2 * (n_slices - 1)
        A[:3, 2] = -a2
        step = -step
    if n_slices > 1 and step <= 1e-9:
        raise OutputError("cannot write DICOM: the slice axis lies in the image plane")
    positions = [A[:3, :] @ np.array([0.0, 0.0, k, 1.0]) for k in range(n_slices)]
    return {"iop": np.concatenate([row_cos, col_cos]), "row_spacing": row_spacing,
            "col_spacing": col_spacing, "spacing": step if step > 0 else
            float(np.linalg.norm(a2)), "positions": positions, "normal": normal,
            "flip": flip, "A_lps": A}


def _source_refs(info: dict[str, Any], position: np.ndarray, geo: dict[str, Any]
                 ) -> list[tuple[str, str, int | None]]:
    """The source instances next to an output slice (the two nearest along the normal)."""
    sources = info.get("sources") or []
    A_src = info.get("affine_lps")
    if not sources:
        return []
    if A_src is None or len(sources) == 1:
        return list(sources)
    k = float((np.linalg.inv(np.asarray(A_src)) @ np.append(position, 1.0))[2])
    lo = int(np.clip(np.floor(k + 1e-6), 0, len(sources) - 1))
    hi = int(np.clip(np.ceil(k - 1e-6), 0, len(sources) - 1))
    return [sources[i] for i in sorted({lo, hi})]


# ---------------------------------------------------------------------------- headers


def _now() -> tuple[str, str]:
    now = _dt.datetime.now()
    return now.strftime("%Y%m%d"), now.strftime("%H%M%S.%f")


def fresh_template(modality: str = "MR") -> Dataset:
    """A minimal header for a Volume that did not come from DICOM: a new placeholder
    patient and study, MR (or CT) image storage."""
    ds = Dataset()
    date, time = _now()
    ds.SpecificCharacterSet = "ISO_IR 100"
    ds.SOPClassUID = CT_IMAGE if modality == "CT" else MR_IMAGE
    ds.Modality = "CT" if modality == "CT" else "MR"
    ds.PatientName = "ANONYMOUS"
    ds.PatientID = "MEDSR-" + generate_uid().rsplit(".", 1)[-1][:12]
    ds.PatientBirthDate = ""
    ds.PatientSex = ""
    ds.StudyInstanceUID = generate_uid()
    ds.StudyDate, ds.StudyTime = date, time
    ds.StudyID = ""
    ds.AccessionNumber = ""
    ds.ReferringPhysicianName = ""
    ds.FrameOfReferenceUID = generate_uid()
    ds.PositionReferenceIndicator = ""
    ds.Manufacturer = "medsr"
    ds.SeriesNumber = 1
    if ds.Modality == "MR":
        ds.ScanningSequence = "RM"
        ds.SequenceVariant = "NONE"
        ds.ScanOptions = ""
        ds.MRAcquisitionType = ""
        ds.EchoTime = ""
        ds.EchoTrainLength = ""
        ds.RepetitionTime = ""
    else:
        ds.KVP = ""
        ds.AcquisitionNumber = ""
    return ds


def _prepare_template(vol: Volume, rgb: bool) -> tuple[Dataset, dict[str, Any]]:
    info = vol.meta.get("dicom") if isinstance(vol.meta.get("dicom"), dict) else None
    if info is None or info.get("template") is None:
        return fresh_template(), {}
    src = info["template"]
    t = Dataset()
    for elem in src:
        if elem.keyword in _STALE or (0x5000 <= elem.tag.group <= 0x50FF) \
                or (0x6000 <= elem.tag.group <= 0x60FF):
            continue
        t.add(copy.deepcopy(elem))
    sop = str(t.get("SOPClassUID", ""))
    if sop in _CLASSIC or info.get("multiframe"):
        t.SOPClassUID = _CLASSIC.get(sop, SECONDARY_CAPTURE if sop not in _KNOWN_SINGLE
                                     else sop)
    if str(t.SOPClassUID) == MR_IMAGE:  # Type 1 attributes the enhanced object lacks
        for kw, val in (("ScanningSequence", "RM"), ("SequenceVariant", "NONE")):
            if not t.get(kw):
                setattr(t, kw, val)
        for kw in ("ScanOptions", "MRAcquisitionType", "EchoTime", "EchoTrainLength"):
            if kw not in t:
                setattr(t, kw, "")
    if rgb and str(t.SOPClassUID) in (MR_IMAGE, CT_IMAGE, PET_IMAGE):
        t.SOPClassUID = SECONDARY_CAPTURE  # MR/CT/PET images must be monochrome
    for kw in ("StudyInstanceUID", "FrameOfReferenceUID"):
        if not t.get(kw):
            setattr(t, kw, generate_uid())
    return t, info


def _series_number(template: Dataset) -> int:
    try:
        n = int(template.get("SeriesNumber"))
    except (TypeError, ValueError):
        return 1001
    return n + 1000 if n + 1000 <= 2**31 - 1 else 1001


def series_description(original: str) -> str:
    """``"<original> SR medsr"`` within the 64 characters of a LO (the original part
    truncated); :data:`DEFAULT_DESCRIPTION` when there is no original."""
    original = " ".join(str(original or "").split())
    if not original:
        return DEFAULT_DESCRIPTION
    room = 64 - len(DESCRIPTION_SUFFIX) - 1
    return f"{original[:room].rstrip()} {DESCRIPTION_SUFFIX}"


def _pixel_module(ds: Dataset, stored: np.ndarray, rgb: bool, slope: str, inter: str,
                  photometric: str, bits_stored: int | None = None) -> None:
    ds.SamplesPerPixel = 3 if rgb else 1
    if rgb:
        ds.PhotometricInterpretation = "RGB"
        ds.PlanarConfiguration = 0
    else:
        ds.PhotometricInterpretation = photometric
        ds.RescaleIntercept = inter
        ds.RescaleSlope = slope
        if "RescaleType" not in ds and str(ds.SOPClassUID) not in (CT_IMAGE, MR_IMAGE,
                                                                    PET_IMAGE):
            ds.RescaleType = "US"
    bits = stored.dtype.itemsize * 8
    ds.BitsAllocated = bits
    ds.BitsStored = bits_stored or bits
    ds.HighBit = (bits_stored or bits) - 1
    ds.PixelRepresentation = 1 if np.issubdtype(stored.dtype, np.signedinteger) else 0


# ---------------------------------------------------------------------------- writer


def write_dicom_series(vol: Volume, out_dir: str | os.PathLike, *, overwrite: bool = False,
                       description: str | None = None,
                       derivation: str = DEFAULT_DERIVATION, anonymize: bool = False,
                       inputs: list[Path] | None = None, dtype: str | None = None) -> Path:
    """Write ``vol`` as a new derived series in directory ``out_dir`` (created atomically).

    The header comes from ``vol.meta["dicom"]`` when the volume was read from DICOM,
    otherwise a fresh minimal MR header with a placeholder patient and study is made.
    ``description`` None extends the source's SeriesDescription (:func:`series_description`).
    ``dtype`` (:func:`dicom_dtype`) None stores pixels as the source did; see
    :func:`encode_pixels`. ``anonymize`` applies the basic de-identification profile (UIDs
    remapped consistently). Returns the output directory.
    """
    kind = dicom_dtype(dtype)
    out = check_output(out_dir, overwrite, inputs)
    data = vol.data
    rgb = data.ndim == 4 and data.shape[3] == 3
    if data.ndim == 4 and not rgb:
        if data.shape[3] != 1:
            raise OutputError(f"cannot write a {data.shape[3]}-channel volume as DICOM "
                              "(grey or RGB only)")
        data = data[..., 0]
    n_slices = data.shape[2]
    geo = _frame_geometry(vol.affine, n_slices)
    if geo["flip"]:
        data = data[:, :, ::-1]

    template, info = _prepare_template(vol, rgb)
    photometric = str(template.get("PhotometricInterpretation", "MONOCHROME2"))
    if photometric not in ("MONOCHROME1", "MONOCHROME2"):
        photometric = "MONOCHROME2"
    bits_stored = None
    if rgb:
        # colour has no rescale: 8 bits unless asked, or the source or the values need 16
        if kind not in (None, "uint8", "uint16"):
            raise UserError(f"colour DICOM stores uint8 or uint16 pixels; --dtype {dtype} "
                            "is not possible")
        wide = kind == "uint16" or kind is None and (
            vol.meta.get("stored_dtype") == "uint16"
            or float(np.nanmax(data, initial=0)) > 255.5)
        stored_all = cast_to_dtype(np.asarray(data), np.uint16 if wide else np.uint8)
        slope = inter = ""
    else:
        stored_all, slope, inter, bits_stored = encode_pixels(data, kind,
                                                              source_encoding(vol))

    map_uid: Callable[[str], str] = str
    if anonymize:
        deid = Deidentifier()
        template = deid(template)
        map_uid = deid.uid

    series_uid = generate_uid()
    date, time = _now()
    iop = [ds_str(v) for v in geo["iop"]]
    pixel_spacing = [ds_str(geo["row_spacing"]), ds_str(geo["col_spacing"])]
    spacing = ds_str(geo["spacing"])
    image_type = ["DERIVED", "SECONDARY"] + [str(v) for v in
                                             list(template.get("ImageType", []))[2:]]
    series_number = _series_number(template)
    if description is None:
        description = series_description(str(template.get("SeriesDescription", "")))

    with atomic_path(out) as tmp:
        tmp.mkdir()
        for k in range(n_slices):
            ds = copy.deepcopy(template)
            sop_uid = generate_uid()
            ds.SOPInstanceUID = sop_uid
            ds.SeriesInstanceUID = series_uid
            ds.SeriesNumber = series_number
            ds.SeriesDescription = description[:64]
            if not anonymize:  # the profile removes these (X/D) or empties them (Z/D)
                ds.SeriesDate, ds.SeriesTime = date, time
                ds.ContentDate, ds.ContentTime = date, time
                ds.InstanceCreationDate, ds.InstanceCreationTime = date, time
            ds.ImageType = image_type
            ds.DerivationDescription = derivation[:1024]
            ds.InstanceNumber = k + 1
            pos = geo["positions"][k]
            ds.ImagePositionPatient = [ds_str(v) for v in pos]
            ds.ImageOrientationPatient = iop
            ds.SliceLocation = ds_str(float(np.dot(pos, geo["normal"])))
            ds.PixelSpacing = pixel_spacing
            ds.SliceThickness = spacing
            ds.SpacingBetweenSlices = spacing
            refs = _source_refs(info, pos, geo)
            if refs:
                ds.SourceImageSequence = Sequence([_source_item(c, map_uid(i), f)
                                                   for c, i, f in refs])
            plane = stored_all[:, :, k]
            pixels = np.ascontiguousarray(np.swapaxes(plane, 0, 1))  # (rows, cols[, 3])
            ds.Rows, ds.Columns = int(pixels.shape[0]), int(pixels.shape[1])
            _pixel_module(ds, pixels, rgb, slope, inter, photometric, bits_stored)
            ds.PixelData = pixels.astype(pixels.dtype.newbyteorder("<")).tobytes()
            ds.file_meta = _file_meta(ds)
            ds.save_as(tmp / f"{k + 1:05d}.dcm", enforce_file_format=True)
    return out


def _source_item(sop_class: str, sop_instance: str, frame: int | None) -> Dataset:
    item = Dataset()
    item.ReferencedSOPClassUID = sop_class
    item.ReferencedSOPInstanceUID = sop_instance
    if frame is not None:
        item.ReferencedFrameNumber = frame
    purpose = Dataset()
    purpose.CodeValue = "121322"
    purpose.CodingSchemeDesignator = "DCM"
    purpose.CodeMeaning = "Source image for image processing operation"
    item.PurposeOfReferenceCodeSequence = Sequence([purpose])
    return item


def _file_meta(ds: Dataset) -> FileMetaDataset:
    fm = FileMetaDataset()
    fm.MediaStorageSOPClassUID = ds.SOPClassUID
    fm.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    fm.TransferSyntaxUID = ExplicitVRLittleEndian
    fm.ImplementationClassUID = PYDICOM_IMPLEMENTATION_UID
    fm.ImplementationVersionName = f"PYDICOM {pydicom.__version__}"[:16]
    return fm
