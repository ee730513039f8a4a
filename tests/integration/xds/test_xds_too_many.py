"""ITI-18 never answers part of a result (ITI TF-2 3.18.4.1.3): more matches than the hub's page
size is ``XDSTooManyResults``, on a hub whose ``PIXELHUB_MAX_PAGE_SIZE`` is 2."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import replace

import pytest

from adapters.xds._ebrim import parse_submit_objects
from mappings.xds_to_documentreference import documententry_to_documentreference
from tests.integration.dicomweb.conftest import WebHub, start_web_hub, stop_process
from tests.integration.xds.conftest import AFFINITY, new_submission
from tests.integration.xds.test_xds_exchange import (
    APPROVED,
    FAILURE,
    FIND_DOCUMENTS,
    SUCCESS,
    errors_of,
    patient,
    stored_query,
)


@pytest.fixture(scope="module")
def small_pages(tmp_path_factory: pytest.TempPathFactory) -> Iterator[WebHub]:
    hub = start_web_hub(tmp_path_factory.mktemp("xds-pages") / "data", channels="xds",
                        extra_env={"PIXELHUB_MAX_PAGE_SIZE": "2"})  # fmt: skip
    yield hub
    stop_process(hub.process)
    hub.log.close()


def documents_for(hub: WebHub, count: int) -> str:
    """``count`` registered entries of one new patient; its MRN."""
    submission = new_submission()
    who = patient(hub, submission.patient_mrn)
    template = parse_submit_objects(submission.body).entries[0]
    entries = [
        {
            "resource": documententry_to_documentreference(
                replace(
                    template,
                    entry_uuid=f"urn:uuid:{uuid.uuid4()}",
                    unique_id=f"2.25.{uuid.uuid4().int}",
                ),
                patient=who,
                content_url="Binary/none",
            ),
            "request": {"method": "POST", "url": "DocumentReference"},
        }
        for _ in range(count)
    ]
    with hub.http() as c:
        r = c.post(
            "/fhir", json={"resourceType": "Bundle", "type": "transaction", "entry": entries}
        )
    assert r.status_code == 200, r.text
    return submission.patient_mrn


def find(hub: WebHub, mrn: str) -> object:
    return stored_query(hub, FIND_DOCUMENTS, {
        "$XDSDocumentEntryPatientId": f"'{mrn}^^^&amp;{AFFINITY}&amp;ISO'",
        "$XDSDocumentEntryStatus": f"('{APPROVED}')",
    })  # fmt: skip


def test_more_matches_than_a_page_is_too_many_results(small_pages: WebHub) -> None:
    answer = find(small_pages, documents_for(small_pages, 3))
    assert answer.get("status") == FAILURE
    assert errors_of(answer) == ["XDSTooManyResults"]


def test_a_page_or_fewer_is_answered_whole(small_pages: WebHub) -> None:
    answer = find(small_pages, documents_for(small_pages, 2))
    assert answer.get("status") == SUCCESS
