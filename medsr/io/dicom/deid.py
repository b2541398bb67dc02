"""De-identification of a DICOM header: the PS3.15 Annex E Basic Application Level
Confidentiality Profile, applied to every element at every nesting depth.

Each attribute of the profile's table (:data:`.deid_profile.PROFILE`) is removed (X),
emptied (Z), given a dummy (D) or UID-remapped (U) as the profile says; where the profile
leaves a choice (X/Z, X/D, X/Z/D, Z/D, X/Z/U*) :data:`.deid_rules.CHOICE` takes the one
that keeps a derived MR/CT/secondary-capture image series valid. On top of the table,
everywhere: private tags, curves (50xx) and overlays (60xx) are removed, as are every
person name (PN) and free-text comment the table does not list, the code sequences in
:data:`.deid_rules.EXTRA_REMOVE`, and every other date/time/age is emptied. Instance UIDs
(the table's U attributes and any other non-standard UID) are replaced by UIDs derived
from the old UID and a per-run secret salt: the same source UID maps to the same new UID
throughout one run, so study, frame of reference and references stay consistent, and
cannot be reversed without the salt. Dummy identifiers are salted hashes too.

This module holds the logic; the rules are data in :mod:`.deid_rules` (medsr's choices)
and :mod:`.deid_profile` (the standard's table).
"""

from __future__ import annotations

import hashlib
import secrets

from pydicom.dataelem import DataElement
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence
from pydicom.uid import UID_dictionary, generate_uid

from medsr.io.dicom.deid_profile import PROFILE
from medsr.io.dicom.deid_rules import (
    BASIC_PROFILE_CODE,
    BYTE_VRS,
    CHOICE,
    DATE_VRS,
    DUMMY_DATES,
    EXTRA_REMOVE,
    KEEP_UID,
    METHOD,
    NUMBER_VRS,
    TEXT_VRS,
    TYPE2_EMPTY,
)


class Deidentifier:
    """Applies the basic profile in place; one instance per output series, so UIDs map
    consistently across its slices."""

    def __init__(self, salt: str | None = None) -> None:
        self._salt = salt or secrets.token_hex(16)
        self._uids: dict[str, str] = {}

    def uid(self, old: str) -> str:
        """The replacement of an instance UID (standard class/syntax UIDs kept)."""
        old = str(old)
        if not old or old in UID_dictionary:
            return old
        if old not in self._uids:
            self._uids[old] = str(generate_uid(entropy_srcs=[self._salt, old]))
        return self._uids[old]

    def dummy(self, old: str) -> str:
        """A 16-character dummy identifier: the same for the same value within a run."""
        return "ANON" + hashlib.sha256((self._salt + old).encode()).hexdigest()[:12].upper()

    def __call__(self, ds: Dataset) -> Dataset:
        """De-identify ``ds`` (and its file meta, if any) in place; returns it."""
        patient_id = str(ds.get("PatientID", ""))
        self.clean(ds)
        if hasattr(ds, "file_meta"):
            self.clean(ds.file_meta)
        ds.PatientName = "ANONYMOUS"  # Z allows a dummy; many viewers want a name
        ds.PatientID = self.dummy(patient_id)  # Z/D: D, consistent per source patient
        for kw in TYPE2_EMPTY:
            if kw not in ds:
                setattr(ds, kw, "")
        ds.PatientIdentityRemoved = "YES"
        ds.DeidentificationMethod = METHOD
        code = Dataset()
        code.CodeValue = BASIC_PROFILE_CODE
        code.CodingSchemeDesignator = "DCM"
        code.CodeMeaning = "Basic Application Confidentiality Profile"
        ds.DeidentificationMethodCodeSequence = Sequence([code])
        ds.LongitudinalTemporalInformationModified = "REMOVED"
        return ds

    def action(self, elem: DataElement) -> str:
        """What happens to ``elem``: X, Z, D, U, U* (keep, clean items) or K (keep)."""
        tag = elem.tag
        if tag.is_private or 0x5000 <= tag.group <= 0x50FF or 0x6000 <= tag.group <= 0x60FF:
            return "X"  # private tags, curves, overlays (may hold burned-in text)
        if tag in EXTRA_REMOVE:
            return "X"
        if int(tag) in PROFILE:
            return CHOICE[PROFILE[int(tag)]]
        kw = elem.keyword
        if elem.VR == "PN" or (elem.VR in TEXT_VRS and "Comment" in kw):
            return "X"
        if elem.VR in DATE_VRS:
            return "Z"
        if elem.VR == "UI" and not kw.endswith(("ClassUID", "SyntaxUID")) \
                and kw not in KEEP_UID:
            return "U"
        return "U*" if elem.VR == "SQ" else "K"

    def clean(self, ds: Dataset) -> None:
        """Apply :meth:`action` to every element of ``ds``, items of sequences included."""
        for elem in list(ds):
            act = self.action(elem)
            if act == "X" or (act == "D" and elem.VR == "SQ"):
                del ds[elem.tag]  # no D sequence is Type 1 in an image IOD: removed
            elif act == "Z":
                elem.value = Sequence() if elem.VR == "SQ" else None
            elif act == "D":
                elem.value = self._dummy_value(elem)
            elif elem.VR == "UI" and act in ("U", "U*"):
                elem.value = self._uid_value(elem)
            elif act == "U":  # a UID attribute read with another VR (UN)
                elem.value = self._dummy_value(elem)
            elif elem.VR == "SQ":
                for item in elem.value:
                    self.clean(item)

    def _uid_value(self, elem: DataElement) -> object:
        if elem.VM > 1:
            return [self.uid(v) for v in elem.value]
        return self.uid(elem.value) if elem.value else elem.value

    def _dummy_value(self, elem: DataElement) -> object:
        vr = elem.VR
        if vr == "UI":
            return self._uid_value(elem)
        if vr == "PN":
            return "ANONYMOUS"
        if vr in DUMMY_DATES:
            return DUMMY_DATES[vr]
        if vr in ("DS", "IS"):
            return "0"
        if vr in NUMBER_VRS:
            return 0
        if vr in BYTE_VRS:
            return b""
        if vr == "UR":
            return ""
        return self.dummy(str(elem.value))  # AE, CS, LO, LT, SH, ST, UC, UT
