"""PixelHub's one error tree.

Every error knows its HTTP status, its FHIR ``OperationOutcome`` issue code (FHIR R4
``valueset-issue-type``) and a stable PixelHub code (``HUB-nnnn``, listed in README.md). Adapters
translate library errors into these where they enter (one ``_errors.py`` per adapter) and translate
these into their own protocol (DICOM status, HL7 ACK, XDS RegistryError) where they leave.

    HubError                      500 exception      HUB-1000
    ├── InvalidRequest            400 invalid        HUB-1100
    │   ├── InvalidResource       400 structure      HUB-1101  (body is not a valid R4 resource)
    │   ├── InvalidSearch         400 invalid        HUB-1102  (bad search parameter or value)
    │   ├── UnknownSearchParameter 400 not-supported HUB-1103  (Prefer: handling=strict)
    │   └── InvalidTransaction    400 invalid        HUB-1104  (Bundle entry problems)
    ├── Unauthorized              401 login          HUB-1201
    ├── Forbidden                 403 forbidden      HUB-1202
    ├── NotFound                  404 not-found      HUB-1301
    │   └── UnknownResourceType   404 not-supported  HUB-1302
    ├── MethodNotAllowed          405 not-supported  HUB-1303
    ├── NotAcceptable             406 not-supported  HUB-1304  (XML asked for: only JSON served)
    ├── Conflict                  409 conflict       HUB-1401
    ├── Gone                      410 deleted        HUB-1402
    ├── PreconditionFailed        412 conflict       HUB-1403  (version conflict, multiple matches)
    ├── PayloadTooLarge           413 too-costly     HUB-1501
    ├── UnsupportedMediaType      415 not-supported  HUB-1502
    ├── Unprocessable             422 processing     HUB-1503
    ├── LoopDetected              508 too-costly     HUB-1901  (a federated request looped)
    ├── OutOfResources            503 transient      HUB-1601  (disk full, store unavailable)
    └── AuditUnavailable          503 transient      HUB-1701  (the audit journal cannot be written)
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar, Literal

Severity = Literal["fatal", "error", "warning", "information"]


@dataclass(frozen=True)
class Issue:
    """One ``OperationOutcome.issue``; ``expression`` holds FHIRPath locations of the problem."""

    diagnostics: str
    code: str = "invalid"
    severity: Severity = "error"
    expression: tuple[str, ...] = ()

    def to_fhir(self) -> dict[str, object]:
        out: dict[str, object] = {
            "severity": self.severity,
            "code": self.code,
            "diagnostics": self.diagnostics,
        }
        if self.expression:
            out["expression"] = list(self.expression)
        return out


@dataclass
class HubError(Exception):
    """Base of every PixelHub error; ``issues`` become the OperationOutcome."""

    message: str
    issues: list[Issue] = field(default_factory=list)
    headers: dict[str, str] = field(default_factory=dict)

    status: ClassVar[int] = 500
    issue_code: ClassVar[str] = "exception"
    hub_code: ClassVar[str] = "HUB-1000"

    def __post_init__(self) -> None:
        super().__init__(self.message)
        if not self.issues:
            self.issues = [Issue(self.message, code=self.issue_code)]

    @classmethod
    def at(cls, message: str, *expression: str) -> HubError:
        """An error located at FHIRPath ``expression`` (e.g. ``ImagingStudy.status``)."""
        return cls(message, [Issue(message, code=cls.issue_code, expression=expression)])

    def operation_outcome(self) -> dict[str, object]:
        return operation_outcome(self.issues, self.hub_code)


def operation_outcome(issues: list[Issue], hub_code: str | None = None) -> dict[str, object]:
    """Render issues as an R4 ``OperationOutcome`` (FHIR R4 operationoutcome.html)."""
    rendered = []
    for issue in issues:
        item = issue.to_fhir()
        if hub_code:
            item["details"] = {
                "coding": [{"system": "urn:pixelhub:error", "code": hub_code}],
                "text": hub_code,
            }
        rendered.append(item)
    return {"resourceType": "OperationOutcome", "issue": rendered}


class InvalidRequest(HubError):
    status = 400
    issue_code = "invalid"
    hub_code = "HUB-1100"


class InvalidResource(InvalidRequest):
    issue_code = "structure"
    hub_code = "HUB-1101"


class InvalidSearch(InvalidRequest):
    hub_code = "HUB-1102"


class UnknownSearchParameter(InvalidSearch):
    issue_code = "not-supported"
    hub_code = "HUB-1103"


class InvalidTransaction(InvalidRequest):
    hub_code = "HUB-1104"


class Unauthorized(HubError):
    status = 401
    issue_code = "login"
    hub_code = "HUB-1201"


class Forbidden(HubError):
    status = 403
    issue_code = "forbidden"
    hub_code = "HUB-1202"


class NotFound(HubError):
    status = 404
    issue_code = "not-found"
    hub_code = "HUB-1301"


class UnknownResourceType(NotFound):
    issue_code = "not-supported"
    hub_code = "HUB-1302"


class MethodNotAllowed(HubError):
    status = 405
    issue_code = "not-supported"
    hub_code = "HUB-1303"


class NotAcceptable(HubError):
    status = 406
    issue_code = "not-supported"
    hub_code = "HUB-1304"


class Conflict(HubError):
    status = 409
    issue_code = "conflict"
    hub_code = "HUB-1401"


class Gone(HubError):
    status = 410
    issue_code = "deleted"
    hub_code = "HUB-1402"


class PreconditionFailed(HubError):
    status = 412
    issue_code = "conflict"
    hub_code = "HUB-1403"


class PayloadTooLarge(HubError):
    status = 413
    issue_code = "too-costly"
    hub_code = "HUB-1501"


class UnsupportedMediaType(HubError):
    status = 415
    issue_code = "not-supported"
    hub_code = "HUB-1502"


class Unprocessable(HubError):
    status = 422
    issue_code = "processing"
    hub_code = "HUB-1503"


class LoopDetected(HubError):
    """A federated request came back to a hub it passed, or went too far (RFC 5842 §7.2)."""

    status = 508
    issue_code = "too-costly"
    hub_code = "HUB-1901"


class OutOfResources(HubError):
    status = 503
    issue_code = "transient"
    hub_code = "HUB-1601"


class AuditUnavailable(HubError):
    """The audit journal cannot be written: the interaction is refused rather than unrecorded."""

    status = 503
    issue_code = "transient"
    hub_code = "HUB-1701"
