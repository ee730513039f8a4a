"""Errors of the XDS channel and their ebRS 3.0 form (IHE ITI TF-3 4.2.4, ITI TF-2 3.41.4.1.3,
ebRS 3.0 ``rs:RegistryResponse``).

Where they enter: the ebRIM parser (``_ebrim``) and the transactions raise ``XdsError`` with an XDS
error code (ITI TF-3 Table 4.2.4.1-2). Where they leave: ``registry_response`` renders them as a
``rs:RegistryErrorList``; SOAP itself answers 200 with that response (or 500 with a fault), so the
HTTP status of the hub error tree is only used if the error ever reaches a FHIR route::

    HubError
    └── XdsError            400 processing  HUB-1801  code, location, severity
        (``XdsError.several`` joins errors; the aggregate lists them in ``errors``)
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import ClassVar, Final, Literal

from lxml import etree

from hub.errors import HubError, Issue

__all__ = [
    "ERROR",
    "FAILURE",
    "PARTIAL_SUCCESS",
    "SUCCESS",
    "WARNING",
    "RegistryStatus",
    "XdsError",
    "XdsSeverity",
    "registry_response",
]

RS_NS: Final = "urn:oasis:names:tc:ebxml-regrep:xsd:rs:3.0"

XdsSeverity = Literal["Error", "Warning"]
RegistryStatus = Literal["Success", "Failure", "PartialSuccess"]

# ebRS 3.0 ErrorSeverityType and ResponseStatusType; PartialSuccess is IHE's (ITI TF-3 4.2.4.2)
ERROR: Final = "urn:oasis:names:tc:ebxml-regrep:ErrorSeverityType:Error"
WARNING: Final = "urn:oasis:names:tc:ebxml-regrep:ErrorSeverityType:Warning"
SUCCESS: Final = "urn:oasis:names:tc:ebxml-regrep:ResponseStatusType:Success"
FAILURE: Final = "urn:oasis:names:tc:ebxml-regrep:ResponseStatusType:Failure"
PARTIAL_SUCCESS: Final = "urn:ihe:iti:2007:ResponseStatusType:PartialSuccess"

_SEVERITY_URN: Final = {"Error": ERROR, "Warning": WARNING}
_STATUS_URN: Final = {"Success": SUCCESS, "Failure": FAILURE, "PartialSuccess": PARTIAL_SUCCESS}


class XdsError(HubError):
    """An XDS error (ITI TF-3 4.2.4.1): ``code`` an XDS error code (the class constants, ITI TF-3
    Table 4.2.4.1-2), ``location`` the id of the registry object at fault, ``severity`` ``Error``
    or ``Warning``. ``XdsError.several`` joins errors into one whose ``errors`` lists them all;
    ``all()`` gives the errors to render (an aggregate's members, or the error itself)::

        raise XdsError(XdsError.METADATA, "creationTime is missing", "Document01")
    """

    # ITI TF-3 Table 4.2.4.1-2 (and ebRS 3.0 for UnresolvedReferenceException)
    DEPRECATED_DOCUMENT: ClassVar[str] = "XDSRegistryDeprecatedDocumentError"
    DOCUMENT_UNIQUE_ID: ClassVar[str] = "XDSDocumentUniqueIdError"
    DUPLICATE_UNIQUE_ID: ClassVar[str] = "XDSDuplicateUniqueIdInRegistry"
    DUPLICATE_UNIQUE_ID_IN_MESSAGE: ClassVar[str] = "XDSRegistryDuplicateUniqueIdInMessage"
    EXTRA_METADATA_NOT_SAVED: ClassVar[str] = "XDSExtraMetadataNotSaved"
    INVALID_DOCUMENT_CONTENT: ClassVar[str] = "InvalidDocumentContent"
    METADATA: ClassVar[str] = "XDSRegistryMetadataError"
    MISSING_DOCUMENT: ClassVar[str] = "XDSMissingDocument"
    MISSING_METADATA: ClassVar[str] = "XDSMissingDocumentMetadata"
    NON_IDENTICAL_HASH: ClassVar[str] = "XDSNonIdenticalHash"
    NON_IDENTICAL_SIZE: ClassVar[str] = "XDSNonIdenticalSize"
    PATIENT_ID_DOES_NOT_MATCH: ClassVar[str] = "XDSPatientIdDoesNotMatch"
    REGISTRY: ClassVar[str] = "XDSRegistryError"
    REGISTRY_BUSY: ClassVar[str] = "XDSRegistryBusy"
    REGISTRY_NOT_AVAILABLE: ClassVar[str] = "XDSRegistryNotAvailable"
    REGISTRY_OUT_OF_RESOURCES: ClassVar[str] = "XDSRegistryOutOfResources"
    REPOSITORY: ClassVar[str] = "XDSRepositoryError"
    REPOSITORY_BUSY: ClassVar[str] = "XDSRepositoryBusy"
    REPOSITORY_DUPLICATE_UNIQUE_ID_IN_MESSAGE: ClassVar[str] = (
        "XDSRepositoryDuplicateUniqueIdInMessage"
    )
    REPOSITORY_METADATA: ClassVar[str] = "XDSRepositoryMetadataError"
    REPOSITORY_OUT_OF_RESOURCES: ClassVar[str] = "XDSRepositoryOutOfResources"
    RESULT_NOT_SINGLE_PATIENT: ClassVar[str] = "XDSResultNotSinglePatient"
    STORED_QUERY_MISSING_PARAM: ClassVar[str] = "XDSStoredQueryMissingParam"
    STORED_QUERY_PARAM_NUMBER: ClassVar[str] = "XDSStoredQueryParamNumber"
    TOO_MANY_RESULTS: ClassVar[str] = "XDSTooManyResults"
    UNKNOWN_PATIENT: ClassVar[str] = "XDSUnknownPatientId"
    UNKNOWN_REPOSITORY: ClassVar[str] = "XDSUnknownRepositoryId"
    UNKNOWN_STORED_QUERY: ClassVar[str] = "XDSUnknownStoredQuery"
    UNRESOLVED_REFERENCE: ClassVar[str] = "UnresolvedReferenceException"

    status: ClassVar[int] = 400
    issue_code: ClassVar[str] = "processing"
    hub_code: ClassVar[str] = "HUB-1801"

    code: str
    location: str
    severity: XdsSeverity
    errors: list[XdsError]

    def __init__(
        self,
        code: str,
        message: str,
        location: str = "",
        *,
        severity: XdsSeverity = "Error",
        errors: list[XdsError] | None = None,
    ) -> None:
        self.code = code
        self.location = location
        self.severity = severity
        self.errors = list(errors or [])
        self.message = message
        self.headers = {}
        self.issues = [
            Issue(
                f"{e.code}: {e.message}" + (f" ({e.location})" if e.location else ""),
                code=self.issue_code,
                severity="warning" if e.severity == "Warning" else "error",
            )
            for e in self.all()
        ]
        self.__post_init__()

    @classmethod
    def at(cls, message: str, *expression: str) -> XdsError:
        """An ``XDSRegistryError`` located at the registry object ``expression[0]``."""
        return cls(cls.REGISTRY, message, expression[0] if expression else "")

    def __repr__(self) -> str:
        return f"XdsError({self.code!r}, {self.message!r}, {self.location!r})"

    def all(self) -> list[XdsError]:
        """The errors to report: the members of an aggregate, else this error alone."""
        return list(self.errors) if self.errors else [self]

    @classmethod
    def several(cls, errors: Iterable[XdsError]) -> XdsError:
        """One error standing for several (flattened): the error itself when alone, else an
        aggregate whose code and location are the first member's."""
        flat = [member for error in errors for member in error.all()]
        if not flat:
            raise ValueError("no errors to join")
        if len(flat) == 1:
            return flat[0]
        first = flat[0]
        message = f"{len(flat)} errors: " + "; ".join(e.message for e in flat)
        return cls(first.code, message, first.location, errors=flat)


def registry_response(errors: list[XdsError], *, status: RegistryStatus) -> etree._Element:
    """``rs:RegistryResponse`` with ``status`` and, when there are errors, a
    ``rs:RegistryErrorList`` holding one ``rs:RegistryError`` per error (ebRS 3.0; ITI TF-3
    4.2.4.1: errorCode, codeContext, location, severity)."""
    response = etree.Element(f"{{{RS_NS}}}RegistryResponse", nsmap={"rs": RS_NS})
    response.set("status", _STATUS_URN[status])
    members = [member for error in errors for member in error.all()]
    if members:
        highest = ERROR if any(m.severity == "Error" for m in members) else WARNING
        error_list = etree.SubElement(response, f"{{{RS_NS}}}RegistryErrorList")
        error_list.set("highestSeverity", highest)
        for member in members:
            item = etree.SubElement(error_list, f"{{{RS_NS}}}RegistryError")
            item.set("errorCode", member.code)
            item.set("codeContext", member.message)
            if member.location:
                item.set("location", member.location)
            item.set("severity", _SEVERITY_URN[member.severity])
    return response
