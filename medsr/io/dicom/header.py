"""DICOM headers: the source header a Volume carries, and the derived series' header.

Reading keeps what a writer needs (:func:`source_meta`): a pixel-free copy of the first
slice's header (multi-frame structure removed), the source instances in slice order and
the series identity. Writing starts from that copy (:func:`derived_template`): patient and
study modules, StudyInstanceUID and FrameOfReferenceUID kept, attributes that are wrong
for new pixels or slices dropped (:data:`_STALE`), enhanced SOP classes mapped to their
classic single-frame class; or, for a Volume that did not come from DICOM, a fresh
minimal MR header (:func:`fresh_template`). New series identity: SeriesNumber + 1000,
SeriesDescription "<original> SR medsr", a SourceImageSequence naming the nearest source
slices, and file meta matching each instance. Decimal Strings are at most 16 characters
(:func:`ds_str`).
"""

from __future__ import annotations

import copy
import datetime as _dt
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

from medsr.io.dicom.discover import PIXEL_KEYWORDS, is_multiframe
from medsr.io.dicom.frames import Frame
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


def ds_str(x: float) -> str:
    """A valid Decimal String (<= 16 characters) for ``x``."""
    x = float(x)
    if x == 0.0:
        return "0"
    if x.is_integer() and abs(x) < 1e15:
        return str(int(x))
    short = repr(x)  # the shortest round-trip form, when it fits
    return short if len(short) <= 16 else format_number_as_ds(x)


# ---------------------------------------------------------------------------- source


_MULTIFRAME_ONLY = (
    "PerFrameFunctionalGroupsSequence", "SharedFunctionalGroupsSequence",
    "DimensionIndexSequence", "DimensionOrganizationSequence", "DimensionOrganizationType",
    "NumberOfFrames", "FrameIncrementPointer", "ConcatenationUID",
    "ConcatenationFrameOffsetNumber", "InConcatenationNumber", "InConcatenationTotalNumber",
    "SOPInstanceUIDOfConcatenationSource", "RepresentativeFrameNumber",
)


def source_meta(header: Dataset, frames: list[Frame], has_geometry: bool) -> dict[str, Any]:
    """What a derived-series writer needs: a pixel-free header template (the first slice,
    multi-frame structure removed), the source SOP instances in slice order, and the
    series identity."""
    template = Dataset()
    for elem in header:
        if elem.keyword in PIXEL_KEYWORDS or elem.keyword in _MULTIFRAME_ONLY:
            continue
        template.add(copy.deepcopy(elem))
    if hasattr(header, "file_meta"):
        template.file_meta = copy.deepcopy(header.file_meta)
    return {
        "template": template,
        "sources": [fr.source for fr in frames],
        "files": sorted({str(fr.file) for fr in frames}),
        "multiframe": is_multiframe(header),
        "has_geometry": has_geometry,
        "sop_class_uid": str(header.get("SOPClassUID", "")),
        "series_instance_uid": str(header.get("SeriesInstanceUID", "")),
        "study_instance_uid": str(header.get("StudyInstanceUID", "")),
        "frame_of_reference_uid": str(header.get("FrameOfReferenceUID", "")),
        "series_number": header.get("SeriesNumber"),
        "series_description": str(header.get("SeriesDescription", "")),
        "modality": str(header.get("Modality", "")),
        "slice_thickness": frames[0].thickness,
        # (slope, intercept) shared by every frame, None when they differ (e.g. PET)
        "rescale": ((frames[0].slope, frames[0].intercept)
                    if len({(fr.slope, fr.intercept) for fr in frames}) == 1 else None),
        "transfer_syntax": str(getattr(getattr(header, "file_meta", None),
                                       "TransferSyntaxUID", "") or ""),
    }


# ---------------------------------------------------------------------------- derived


def now() -> tuple[str, str]:
    """Today's date and the time now as DICOM DA and TM strings."""
    stamp = _dt.datetime.now()
    return stamp.strftime("%Y%m%d"), stamp.strftime("%H%M%S.%f")


def fresh_template(modality: str = "MR") -> Dataset:
    """A minimal header for a Volume that did not come from DICOM: a new placeholder
    patient and study, MR (or CT) image storage."""
    ds = Dataset()
    date, time = now()
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


def derived_template(vol: Volume, rgb: bool) -> tuple[Dataset, dict[str, Any]]:
    """The header every slice of the derived series starts from, and the source's
    ``meta["dicom"]`` ({} for a Volume that did not come from DICOM)."""
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


def series_number(template: Dataset) -> int:
    """The derived series' number: the source's + 1000 (1001 without one)."""
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


def source_refs(info: dict[str, Any], position: np.ndarray, geo: dict[str, Any]
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


def source_item(sop_class: str, sop_instance: str, frame: int | None) -> Dataset:
    """One item of SourceImageSequence: a source instance (and frame) this slice is
    derived from."""
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


def file_meta(ds: Dataset) -> FileMetaDataset:
    """File meta information for ``ds``: explicit VR little endian, its SOP instance."""
    fm = FileMetaDataset()
    fm.MediaStorageSOPClassUID = ds.SOPClassUID
    fm.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    fm.TransferSyntaxUID = ExplicitVRLittleEndian
    fm.ImplementationClassUID = PYDICOM_IMPLEMENTATION_UID
    fm.ImplementationVersionName = f"PYDICOM {pydicom.__version__}"[:16]
    return fm
