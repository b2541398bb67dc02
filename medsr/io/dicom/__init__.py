"""DICOM input and output: series and multi-frame reading, derived-series writing.

One job per module:

- :mod:`.discover`: which files are DICOM, their headers, the series of a directory;
- :mod:`.frames`: one 2D image's header values (position, orientation, spacing, rescale),
  checked as they are read, for single- and multi-frame objects;
- :mod:`.geometry`: LPS positions/orientation to an affine (slice order and spacing
  checks) and back to per-slice positions;
- :mod:`.pixels`: decoding, rescale and dtype choice when reading; the stored pixel
  representation when writing;
- :mod:`.header`: the source header a Volume carries and the derived series' header
  (UIDs, ImageType, SeriesDescription, SeriesNumber, references);
- :mod:`.read` and :mod:`.write`: the two entry points;
- :mod:`.deid` (logic), :mod:`.deid_rules` (medsr's choices) and :mod:`.deid_profile`
  (the standard's table): the PS3.15 Basic Profile.

pydicom is imported at module level here; :mod:`medsr.io` imports this package lazily,
so reading a NIfTI never imports pydicom.
"""

from medsr.io.dicom.deid import Deidentifier
from medsr.io.dicom.discover import is_dicom_dir, is_dicom_file
from medsr.io.dicom.header import fresh_template
from medsr.io.dicom.pixels import decoder_hint, encode_intensities
from medsr.io.dicom.read import read_dicom
from medsr.io.dicom.write import write_dicom_series

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
