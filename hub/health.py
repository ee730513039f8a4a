"""Liveness and readiness for ``/health`` (store status and projector lag)."""

from __future__ import annotations

from typing import Any

from hub.ports import Engine
from hub.projectors import ProjectorRunner


class HealthCheck:
    def __init__(self, engine: Engine, runner: ProjectorRunner, *, max_lag: int = 10_000) -> None:
        self.engine = engine
        self.runner = runner
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
        if self.draining:
            checks["shutdown"] = {"status": "fail", "output": "draining"}
        return ready, {"status": "pass" if ready else "fail", "checks": checks}
