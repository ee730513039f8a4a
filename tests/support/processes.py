"""The processes a hub under test started (Linux ``/proc``)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Child:
    pid: int
    name: str  # what ``ps`` shows (``/proc/<pid>/comm``, set by ``prctl(PR_SET_NAME)``)
    cmdline: bytes


def children(parent: int) -> list[Child]:
    """The live (or not yet reaped) children of ``parent``."""
    found = []
    for status in Path("/proc").glob("[0-9]*/status"):
        try:
            fields = dict(
                line.split(":\t", 1) for line in status.read_text().splitlines() if ":\t" in line
            )
            cmdline = (status.parent / "cmdline").read_bytes()
        except OSError:
            continue
        if fields.get("PPid", "").strip() == str(parent):
            found.append(Child(int(status.parent.name), fields.get("Name", "").strip(), cmdline))
    return found
