"""Helpers of the access-restriction tests (patient compartment, query-restricted scopes)."""

from __future__ import annotations

from typing import Any

from fastapi.testclient import TestClient

LOINC = "http://loinc.org"


def document(subject: str, author: str | None = None, code: str = "LP29684-5") -> dict[str, Any]:
    doc: dict[str, Any] = {
        "resourceType": "DocumentReference",
        "status": "current",
        "subject": {"reference": subject},
        "category": [{"coding": [{"system": LOINC, "code": code}]}],
        "content": [{"attachment": {"contentType": "application/pdf", "url": "http://x.org/d"}}],
    }
    if author:
        doc["author"] = [{"reference": author}]
    return doc


def ids(bundle: dict[str, Any], mode: str = "match") -> set[str]:
    return {
        f"{e['resource']['resourceType']}/{e['resource']['id']}"
        for e in bundle.get("entry", [])
        if e["search"]["mode"] == mode
    }


def search(http: TestClient, url: str, headers: dict[str, str]) -> dict[str, Any]:
    r = http.get(url, headers=headers)
    assert r.status_code == 200, r.text
    body: dict[str, Any] = r.json()
    return body
