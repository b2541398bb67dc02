"""DICOM input and output: series and multi-frame reading, derived-series writing.

The work lives in :mod:`medsr.io.dicom_read`, :mod:`medsr.io.dicom_write` and
:mod:`medsr.io.dicom_deid`; this module is the public face the I/O dispatch imports.
"""

from medsr.io.dicom_deid import Deidentifier
from medsr.io.dicom_read import decoder_hint, is_dicom_dir, is_dicom_file, read_dicom
from medsr.io.dicom_write import encode_intensities, fresh_template, write_dicom_series

__all__ = [
    "Deidentifier",
    "decoder_hint",
    "encode_intensities",
    "fresh_template",
    "is_dicom_dir",
    "is_dicom_file",
    "read_dicom",
    "write_dicom_series",
]
