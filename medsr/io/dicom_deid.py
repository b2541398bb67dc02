"""Basic de-identification of a DICOM header (PS3.15 Annex E, basic profile).

Identifying attributes are removed (X), emptied (Z) or replaced by dummies (D); every
person name, date and time is emptied; private tags, overlays and curves are removed;
instance UIDs are replaced by new ones derived from the old UID and a per-run secret
salt, so the same source UID maps to the same new UID within one run (references stay
consistent) and cannot be reversed without the salt.
"""

from __future__ import annotations

import hashlib
import secrets

from pydicom.datadict import keyword_dict
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence
from pydicom.uid import UID_dictionary, generate_uid

# Removed (X or X/Z/D where removal keeps the IOD valid for our classic image objects).
REMOVE = (
    "AccessionNumber", "AcquisitionComments", "AcquisitionContextSequence",
    "AcquisitionDeviceProcessingDescription", "AcquisitionProtocolDescription",
    "ActualHumanPerformersSequence", "AdditionalPatientHistory", "AdmissionID",
    "AdmittingDiagnosesCodeSequence", "AdmittingDiagnosesDescription", "Allergies",
    "Arbitrary", "AuthorObserverSequence", "BranchOfService", "CommentsOnThePerformedProcedureStep",
    "ConfidentialityConstraintOnPatientDataDescription", "ContentCreatorName",
    "ContributionDescription", "CountryOfResidence", "CurrentPatientLocation",
    "CustodialOrganizationSequence", "DataSetTrailingPadding", "DeviceSerialNumber",
    "DeviceUID", "DigitalSignaturesSequence", "DischargeDiagnosisDescription",
    "DistributionAddress", "DistributionName", "EthnicGroup", "FrameComments",
    "GraphicAnnotationSequence", "HumanPerformerName", "HumanPerformerOrganization",
    "IconImageSequence", "IdentifyingComments", "ImageComments", "ImagePresentationComments",
    "ImagingServiceRequestComments", "InstitutionAddress", "InstitutionalDepartmentName",
    "InstitutionCodeSequence", "InstitutionName", "IssuerOfAdmissionID",
    "IssuerOfPatientID", "MedicalAlerts", "MedicalRecordLocator", "MilitaryRank",
    "ModifiedAttributesSequence", "NameOfPhysiciansReadingStudy",
    "NamesOfIntendedRecipientsOfResults",
    "Occupation", "OperatorIdentificationSequence", "OperatorsName",
    "OriginalAttributesSequence", "OrderCallbackPhoneNumber", "OrderEnteredBy",
    "OrderEntererLocation", "OtherPatientIDs", "OtherPatientIDsSequence", "OtherPatientNames",
    "ParticipantSequence", "PatientAddress", "PatientAge", "PatientBirthName",
    "PatientBirthTime", "PatientComments", "PatientInstitutionResidence",
    "PatientInsurancePlanCodeSequence", "PatientMotherBirthName",
    "PatientPrimaryLanguageCodeSequence",
    "PatientReligiousPreference", "PatientSize", "PatientState", "PatientTelephoneNumbers",
    "PatientTransportArrangements", "PatientWeight", "PerformedLocation",
    "PerformedProcedureStepDescription", "PerformedProcedureStepID",
    "PerformingPhysicianIdentificationSequence", "PerformingPhysicianName",
    "PersonAddress", "PersonIdentificationCodeSequence", "PersonName", "PersonTelephoneNumbers",
    "PhysicianApprovingInterpretation", "PhysiciansOfRecord",
    "PhysiciansOfRecordIdentificationSequence", "PhysiciansReadingStudyIdentificationSequence",
    "PreMedication", "PregnancyStatus", "ProtocolName", "ReasonForTheImagingServiceRequest",
    "ReasonForStudy", "ReferencedPatientAliasSequence", "ReferencedPatientSequence",
    "ReferencedPerformedProcedureStepSequence", "ReferencedStudySequence",
    "ReferringPhysicianAddress", "ReferringPhysicianIdentificationSequence",
    "ReferringPhysicianTelephoneNumbers", "RegionOfResidence", "RequestAttributesSequence",
    "RequestedContrastAgent", "RequestedProcedureComments", "RequestedProcedureDescription",
    "RequestedProcedureID", "RequestedProcedureLocation", "RequestingPhysician",
    "RequestingService", "ResponsibleOrganization", "ResponsiblePerson",
    "ResultsComments", "ResultsDistributionListSequence", "ScheduledHumanPerformersSequence",
    "ScheduledPatientInstitutionResidence", "ScheduledPerformingPhysicianIdentificationSequence",
    "ScheduledProcedureStepDescription", "ScheduledProcedureStepLocation",
    "ScheduledStationName", "SeriesDescription", "ServiceEpisodeDescription",
    "ServiceEpisodeID", "SmokingStatus", "SpecialNeeds", "StationName", "StudyComments",
    "StudyDescription", "StudyIDIssuer", "TextComments", "TopicAuthor", "TopicKeywords",
    "TopicSubject", "TopicTitle", "VerifyingObserverName", "VerifyingOrganization",
    "VisitComments",
)
# Kept but emptied (Type 2 in the image IODs we write).
EMPTY = ("PatientBirthDate", "PatientSex", "ReferringPhysicianName", "StudyID",
         "StudyDate", "StudyTime", "ContentDate", "ContentTime")

METHOD = "PS3.15 E.1-1 Basic Profile (medsr)"


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

    def _dummy_id(self, old: str) -> str:
        return "ANON-" + hashlib.sha256((self._salt + old).encode()).hexdigest()[:12].upper()

    def __call__(self, ds: Dataset) -> Dataset:
        ds.remove_private_tags()
        for tag in [e.tag for e in ds if 0x5000 <= e.tag.group <= 0x50FF
                    or 0x6000 <= e.tag.group <= 0x60FF]:
            del ds[tag]  # curves and overlays (may hold burned-in text)
        patient_id = str(ds.get("PatientID", ""))
        self._clean(ds)
        ds.PatientName = "ANONYMOUS"
        ds.PatientID = self._dummy_id(patient_id)
        for kw in EMPTY:
            if kw in keyword_dict:
                setattr(ds, kw, "")
        ds.PatientIdentityRemoved = "YES"
        ds.DeidentificationMethod = METHOD
        code = Dataset()
        code.CodeValue = "113100"
        code.CodingSchemeDesignator = "DCM"
        code.CodeMeaning = "Basic Application Confidentiality Profile"
        ds.DeidentificationMethodCodeSequence = Sequence([code])
        ds.LongitudinalTemporalInformationModified = "REMOVED"
        return ds

    def _clean(self, ds: Dataset) -> None:
        for kw in REMOVE:
            if kw in ds:
                delattr(ds, kw)
        for elem in list(ds):
            if elem.VR == "SQ":
                for item in elem.value:
                    self._clean(item)
            elif elem.VR in ("PN", "DA", "DT", "TM", "AS"):
                elem.value = ""
            elif elem.VR == "UI" and elem.value:
                if elem.VM > 1:
                    elem.value = [self.uid(v) for v in elem.value]
                else:
                    elem.value = self.uid(elem.value)
