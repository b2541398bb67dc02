"""Write a Volume as a derived DICOM series (one single-frame file per slice).

Every rule of DESIGN.md's DICOM section, in one loop over the slices: the header from
:func:`.header.derived_template` (source patient/study kept, or a fresh one), new series
and instance UIDs, ImageType DERIVED\\SECONDARY with DerivationDescription and a
SourceImageSequence, per-slice position from the affine (:func:`.geometry.output_geometry`),
pixels encoded as :func:`.pixels.encode_pixels` says, optional de-identification
(:class:`.deid.Deidentifier`), explicit VR little endian, written atomically.
docs/dicom.md is the user's page.
"""

from __future__ import annotations

import copy
import os
from collections.abc import Callable
from pathlib import Path

import numpy as np
from pydicom.sequence import Sequence
from pydicom.uid import generate_uid

from medsr.errors import OutputError, UserError
from medsr.io.common import atomic_path, check_output
from medsr.io.dicom.deid import Deidentifier
from medsr.io.dicom.geometry import output_geometry
from medsr.io.dicom.header import (
    DEFAULT_DERIVATION,
    derived_template,
    ds_str,
    file_meta,
    now,
    series_description,
    series_number,
    source_item,
    source_refs,
)
from medsr.io.dicom.pixels import dicom_dtype, encode_pixels, pixel_module, source_encoding
from medsr.io.dtype import cast_to_dtype
from medsr.volume import Volume


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
    geo = output_geometry(vol.affine, n_slices)
    if geo["flip"]:
        data = data[:, :, ::-1]

    template, info = derived_template(vol, rgb)
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
    date, time = now()
    iop = [ds_str(v) for v in geo["iop"]]
    pixel_spacing = [ds_str(geo["row_spacing"]), ds_str(geo["col_spacing"])]
    spacing = ds_str(geo["spacing"])
    image_type = ["DERIVED", "SECONDARY"] + [str(v) for v in
                                             list(template.get("ImageType", []))[2:]]
    number = series_number(template)
    if description is None:
        description = series_description(str(template.get("SeriesDescription", "")))

    with atomic_path(out) as tmp:
        tmp.mkdir()
        for k in range(n_slices):
            ds = copy.deepcopy(template)
            sop_uid = generate_uid()
            ds.SOPInstanceUID = sop_uid
            ds.SeriesInstanceUID = series_uid
            ds.SeriesNumber = number
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
            refs = source_refs(info, pos, geo)
            if refs:
                ds.SourceImageSequence = Sequence([source_item(c, map_uid(i), f)
                                                   for c, i, f in refs])
            plane = stored_all[:, :, k]
            pixels = np.ascontiguousarray(np.swapaxes(plane, 0, 1))  # (rows, cols[, 3])
            ds.Rows, ds.Columns = int(pixels.shape[0]), int(pixels.shape[1])
            pixel_module(ds, pixels, rgb, slope, inter, photometric, bits_stored)
            ds.PixelData = pixels.astype(pixels.dtype.newbyteorder("<")).tobytes()
            ds.file_meta = file_meta(ds)
            ds.save_as(tmp / f"{k + 1:05d}.dcm", enforce_file_format=True)
    return out
