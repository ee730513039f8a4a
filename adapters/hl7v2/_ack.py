"""Acknowledgment messages (HL7 v2.5.1 ch. 2 §2.9 "Message processing rules", §2.14.1 ACK).

Original mode: one ``ACK`` with ``MSA-1`` ``AA``/``AE``/``AR`` and ``MSA-2`` = the message's
``MSH-10``. Enhanced mode (``MSH-15``/``MSH-16`` valued, §2.9.3): an accept acknowledgment
(``CA``/``CE``/``CR``) and/or an application acknowledgment, each sent only when the sender's
condition (table 0155: AL always, NE never, ER on error, SU on success) asks for it.

Every error becomes an ``ERR`` segment: from v2.5 on ``ERR-2`` (location), ``ERR-3`` (table 0357
code), ``ERR-4`` (severity) and ``ERR-8`` (user message); before v2.5 ``ERR-1`` (ELD:
segment^sequence^field^code&text&HL70357) and ``MSA-6``.
"""

from __future__ import annotations

import itertools
import os
from dataclasses import dataclass
from datetime import datetime

from adapters.hl7v2._errors import ERROR_TEXT, AckCode, AckError
from adapters.hl7v2._parser import escape
from mappings.hl7v2_model import Hl7Message, Segment

_ACCEPT = {"AA": "CA", "AE": "CE", "AR": "CR"}
_COUNTER = itertools.count(1)
_PREFIX = f"PH{os.getpid() % 100000:05d}"
_OLD_ERR = ("2.1", "2.2", "2.3", "2.3.1", "2.4")


def _control_id() -> str:
    return f"{_PREFIX}{next(_COUNTER):010d}"


@dataclass(frozen=True)
class AckContext:
    """What an ACK echoes from the message (all empty when the MSH could not be read)."""

    control_id: str = ""
    sending_app: str = ""
    sending_facility: str = ""
    receiving_app: str = ""
    receiving_facility: str = ""
    trigger_event: str = ""
    processing_id: str = "P"
    version: str = "2.5.1"
    charset: str = ""
    accept_ack_type: str = ""
    application_ack_type: str = ""

    @classmethod
    def of(cls, msg: Hl7Message) -> AckContext:
        msh = msg.msh
        return cls(
            control_id=msh.value(10),
            sending_app=_hd(msh, 3),
            sending_facility=_hd(msh, 4),
            receiving_app=_hd(msh, 5),
            receiving_facility=_hd(msh, 6),
            trigger_event=msh.value(9, 2),
            processing_id=msh.value(11, 1) or "P",
            version=msh.value(12, 1) or "2.5.1",
            charset=msh.value(18),
            accept_ack_type=msh.value(15).upper(),
            application_ack_type=msh.value(16).upper(),
        )

    @property
    def enhanced(self) -> bool:
        return bool(self.accept_ack_type or self.application_ack_type)


def _hd(seg: Segment, n: int) -> str:
    parts = [seg.value(n, i) for i in (1, 2, 3)]
    while parts and not parts[-1]:
        parts.pop()
    return "^".join(escape(p) for p in parts)


def _wanted(condition: str, ack_code: AckCode) -> bool:
    """Table 0155 acknowledgment condition."""
    if condition in ("", "AL"):
        return True
    if condition == "NE":
        return False
    if condition == "ER":
        return ack_code != "AA"
    if condition == "SU":
        return ack_code == "AA"
    return True


def acknowledgments(
    ctx: AckContext, ack_code: AckCode, errors: list[AckError], now: datetime
) -> list[str]:
    """The ACK message(s) to send back for one message, as ER7 text."""
    if not ctx.enhanced:
        return [build_ack(ctx, ack_code, errors, now)]
    out = []
    accept_code = "AA" if ack_code == "AE" else ack_code  # AE is an application-level outcome
    if _wanted(ctx.accept_ack_type, accept_code):
        out.append(build_ack(ctx, _ACCEPT[accept_code], errors if ack_code == "AR" else [], now))
    if (
        ack_code != "AR"
        and ctx.application_ack_type
        and _wanted(ctx.application_ack_type, ack_code)
    ):
        out.append(build_ack(ctx, ack_code, errors, now))
    return out


def build_ack(ctx: AckContext, code: str, errors: list[AckError], now: datetime) -> str:
    """One ``ACK`` (v2.5.1 §2.14.1: MSH, MSA, [ERR...])."""
    version = ctx.version if ctx.version else "2.5.1"
    old = version in _OLD_ERR
    msg_type = f"ACK^{ctx.trigger_event}" if ctx.trigger_event else "ACK"
    if version not in ("2.1", "2.2", "2.3") and ctx.trigger_event:
        msg_type += "^ACK"
    stamp = now.strftime("%Y%m%d%H%M%S") + now.strftime("%z")
    msh = [
        "MSH",
        "^~\\&",
        ctx.receiving_app or "PIXELHUB",
        ctx.receiving_facility,
        ctx.sending_app,
        ctx.sending_facility,
        stamp,
        "",
        msg_type,
        _control_id(),
        escape(ctx.processing_id) or "P",
        escape(version),
    ]
    if ctx.charset:
        msh += ["", "", "", "", "", escape(ctx.charset)]
    first = errors[0] if errors else None
    msa = ["MSA", code, escape(ctx.control_id)]
    if first is not None:
        msa.append(escape(first.text)[:80] if old else escape(first.text))
        if old:
            msa += ["", "", f"{first.code}^{ERROR_TEXT.get(first.code, '')}^HL70357"]
    segments = ["|".join(msh), "|".join(msa).rstrip("|")]
    for err in errors:
        segments.append(_err(err, old))
    return "\r".join(segments) + "\r"


def _err(err: AckError, old: bool) -> str:
    loc = err.location
    code_text = ERROR_TEXT.get(err.code, "")
    if old:
        where = f"{loc.segment}^{loc.sequence}^{loc.field or ''}" if loc else "^^"
        return f"ERR|{where}^{err.code}&{code_text}&HL70357"
    erl = ""
    if loc is not None:
        parts = [loc.segment, str(loc.sequence)]
        for value in (loc.field, loc.repetition, loc.component, loc.subcomponent):
            parts.append(str(value) if value else "")
        while parts and not parts[-1]:
            parts.pop()
        erl = "^".join(parts)
    return "|".join(
        [
            "ERR",
            "",
            erl,
            f"{err.code}^{code_text}^HL70357",
            err.severity,
            "",
            "",
            "",
            escape(err.text),
        ]
    )
