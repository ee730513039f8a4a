"""Liveness and readiness for ``/health`` (store status and projector lag)."""

from __future__ import annotations

from typing import Any

from hub.audit import AuditIndexer
from hub.ports import Engine
from hub.projectors import ProjectorRunner


class HealthCheck:
    def __init__(
        self,
        engine: Engine,
        runner: ProjectorRunner,
        *,
        max_lag: int = 10_000,
        audit_indexer: AuditIndexer | None = None,
    ) -> None:
        self.engine = engine
        self.runner = runner
        self.audit_indexer = audit_indexer
        self.max_lag = max_lag
        self.draining = False

    def readiness(self) -> tuple[bool, dict[str, Any]]:
        """``(ready, details)``: the store answers, projectors keep up, not shutting down."""
        checks: dict[str, Any] = {}
        ready = not self.draining
        try:
            checks["store"] = {"status": "pass", **self.engine.status()}
        except Exception as exc:
            checks["store"] = {"status": "fail", "output": str(exc)}
            ready = False
        try:
            lag = self.runner.lag()
        except Exception as exc:
            lag = {}
            checks["changeFeed"] = {"status": "fail", "output": str(exc)}
            ready = False
        checks["projectors"] = {
            name: {
                "status": "fail" if name in self.runner.errors or n > self.max_lag else "pass",
                "lag": n,
                **({"output": self.runner.errors[name]} if name in self.runner.errors else {}),
            }
            for name, n in lag.items()
        }
        if self.runner.leadership is not None:  # replicas: which one runs the projectors
            checks["projectorLeadership"] = {"status": "pass", "leader": self.runner.leading()}
        if self.audit_indexer is not None:
            indexer = self.audit_indexer
            lag_events = indexer.lag()
            failing = indexer.error is not None or lag_events > self.max_lag
            checks["auditIndex"] = {"status": "fail" if failing else "pass", "lag": lag_events}
            if indexer.error is not None:
                checks["auditIndex"]["output"] = indexer.error
        if self.draining:
            checks["shutdown"] = {"status": "fail", "output": "draining"}
        return ready, {"status": "pass" if ready else "fail", "checks": checks}
