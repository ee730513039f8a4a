"""The audit trail (issue 7): BALP-shaped AuditEvents, a hash-chained journal, its verifier."""

from hub.audit.journal import AuditJournal
from hub.audit.signing import KeyStoreSigner
from hub.audit.trail import AuditIndexer, AuditTrail
from hub.audit.verify import VerifyReport, verify_journal
from hub.errors import AuditUnavailable
from mappings.interaction_to_auditevent import Actor, Source

__all__ = [
    "Actor",
    "AuditIndexer",
    "AuditJournal",
    "AuditTrail",
    "AuditUnavailable",
    "KeyStoreSigner",
    "Source",
    "VerifyReport",
    "verify_journal",
]
