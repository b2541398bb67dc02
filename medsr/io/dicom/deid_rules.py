"""How medsr applies the PS3.15 Basic Profile: its choices where the standard leaves one,
and the rules it adds beyond the standard's table (:mod:`.deid_profile`).

Data only; :class:`medsr.io.dicom.deid.Deidentifier` applies them.
"""

from __future__ import annotations

from pydicom.tag import Tag

METHOD = "PS3.15 E.1-1 Basic Profile (medsr)"
BASIC_PROFILE_CODE = "113100"  # DCM: Basic Application Confidentiality Profile

# The action medsr takes for each action of the profile. "X unless Z/D is required to
# keep the IOD valid": every X/... attribute is Type 3 in the classic MR, CT and
# secondary-capture image IODs medsr writes, so X; Z/D attributes are Type 2 or 2C
# there, so Z (PatientID gets a dummy, below); X/Z/U* sequences (Referenced/Source
# Image) are kept with their UIDs remapped and their items cleaned.
CHOICE = {"X": "X", "Z": "Z", "D": "D", "U": "U", "Z/D": "Z", "X/Z": "X", "X/D": "X",
          "X/Z/D": "X", "X/Z/U*": "U*"}
# Type 2 attributes of the patient and study modules: present, emptied (Z).
TYPE2_EMPTY = ("PatientBirthDate", "PatientSex", "ReferringPhysicianName", "StudyID",
               "StudyDate", "StudyTime", "AccessionNumber")
# Beyond the table (medsr's own, all Type 3 in the image IODs): code sequences whose
# local code meanings name the visit, the procedure or the patient's issuer.
EXTRA_REMOVE = frozenset(Tag(t) for t in (
    0x00081032,  # ProcedureCodeSequence
    0x00321064,  # RequestedProcedureCodeSequence
    0x00400260,  # PerformedProtocolCodeSequence
    0x00100024,  # IssuerOfPatientIDQualifiersSequence
))
# Value representations the fallback rules of Deidentifier.action look at.
TEXT_VRS = frozenset({"LO", "LT", "SH", "ST", "UC", "UT"})
DATE_VRS = frozenset({"DA", "DT", "TM", "AS"})
BYTE_VRS = frozenset({"OB", "OD", "OF", "OL", "OV", "OW", "UN"})
NUMBER_VRS = frozenset({"FD", "FL", "SL", "SS", "SV", "UL", "US", "UV"})
DUMMY_DATES = {"DA": "19000101", "DT": "19000101000000", "TM": "000000", "AS": "000D"}
# Unlisted UIDs that name a registry entry, not an instance: kept.
KEEP_UID = frozenset({"CodingSchemeUID", "ContextUID", "MappingResourceUID",
                      "ContextGroupExtensionCreatorUID"})
