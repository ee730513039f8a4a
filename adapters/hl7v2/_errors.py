"""Errors of the HL7 v2 channel and their ACK form (HL7 v2.5.1 ch. 2 §2.9.2, table 0357).

Where they enter: the ER7 parser and header checks raise ``Hl7Error``; a mapping raises
``mappings.hl7v2_model.MappingError``; the FHIR service raises ``hub.errors.HubError``. Where they
leave: ``to_ack_error`` turns each into an acknowledgment code and an ``ERR`` entry::

    Hl7Error            AR/AE as raised (framing, MSH, peers, version, type)
    MappingError        AE + its 0357 code (100 segment, 101 required, 102 data type, 103 table)
    HubError
    ├── InvalidRequest  AE 102 (the mapped value is not valid R4)
    ├── NotFound        AE 204 unknown key identifier
    ├── PreconditionFailed AE 205 duplicate key identifier (several resources match)
    ├── Conflict        AE 206 application record locked
    ├── OutOfResources  AR 207 (store unavailable: the sender should resend)
    └── other           AE 207 application internal error
    anything else       AR 207 application internal error (logged)
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from hub.errors import (
    Conflict,
    HubError,
    InvalidRequest,
    NotFound,
    OutOfResources,
    PreconditionFailed,
)
from mappings.hl7v2_model import ErrorLocation, MappingError

AckCode = Literal["AA", "AE", "AR"]

SEGMENT_SEQUENCE_ERROR = 100
REQUIRED_FIELD_MISSING = 101
DATA_TYPE_ERROR = 102
TABLE_VALUE_NOT_FOUND = 103
UNSUPPORTED_MESSAGE_TYPE = 200
UNSUPPORTED_EVENT_CODE = 201
UNSUPPORTED_PROCESSING_ID = 202
UNSUPPORTED_VERSION_ID = 203
UNKNOWN_KEY_IDENTIFIER = 204
DUPLICATE_KEY_IDENTIFIER = 205
APPLICATION_RECORD_LOCKED = 206
APPLICATION_INTERNAL_ERROR = 207

# HL7 table 0357 message error condition codes and their texts
ERROR_TEXT = {
    0: "Message accepted",
    100: "Segment sequence error",
    101: "Required field missing",
    102: "Data type error",
    103: "Table value not found",
    200: "Unsupported message type",
    201: "Unsupported event code",
    202: "Unsupported processing id",
    203: "Unsupported version id",
    204: "Unknown key identifier",
    205: "Duplicate key identifier",
    206: "Application record locked",
    207: "Application internal error",
}


@dataclass(frozen=True)
class AckError:
    """One ``ERR`` segment: table 0357 ``code``, diagnostic ``text``, severity (table 0516:
    E error, W warning, I information) and location (``ERR-2``)."""

    code: int
    text: str
    location: ErrorLocation | None = None
    severity: Literal["E", "W", "I", "F"] = "E"


@dataclass
class Hl7Error(Exception):
    """A message refused by the channel itself (framing, header, peer, version, type)."""

    ack_code: AckCode
    code: int
    text: str
    location: ErrorLocation | None = None
    extra: list[AckError] = field(default_factory=list)

    def __post_init__(self) -> None:
        super().__init__(self.text)

    @property
    def errors(self) -> list[AckError]:
        return [AckError(self.code, self.text, self.location), *self.extra]


def to_ack_error(exc: BaseException) -> tuple[AckCode, list[AckError]]:
    """The ACK code and ERR entries for any error raised while handling a message."""
    if isinstance(exc, Hl7Error):
        return exc.ack_code, exc.errors
    if isinstance(exc, MappingError):
        return "AE", [AckError(exc.code, exc.message, exc.location)]
    if isinstance(exc, HubError):
        text = "; ".join(i.diagnostics for i in exc.issues) or exc.message
        if isinstance(exc, InvalidRequest):
            return "AE", [AckError(DATA_TYPE_ERROR, text)]
        if isinstance(exc, NotFound):
            return "AE", [AckError(UNKNOWN_KEY_IDENTIFIER, text)]
        if isinstance(exc, PreconditionFailed):
            return "AE", [AckError(DUPLICATE_KEY_IDENTIFIER, text)]
        if isinstance(exc, Conflict):
            return "AE", [AckError(APPLICATION_RECORD_LOCKED, text)]
        if isinstance(exc, OutOfResources):
            return "AR", [AckError(APPLICATION_INTERNAL_ERROR, text)]
        return "AE", [AckError(APPLICATION_INTERNAL_ERROR, text)]
    return "AR", [AckError(APPLICATION_INTERNAL_ERROR, f"Internal error: {type(exc).__name__}")]
