"""A real SMART app launch: the SMART Python client (``fhirclient``) builds the authorization
URL from ``/fhir/metadata``; headless Debian chromium (driven by Playwright) signs in, picks the
patient and approves on PixelHub's own pages; fhirclient exchanges the code (PKCE S256) and
searches ImagingStudy and DocumentReference with the token. Against ``pixelhub serve``."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from fhirclient import client as smart_client
from fhirclient.models.documentreference import DocumentReference
from fhirclient.models.imagingstudy import ImagingStudy
from playwright.sync_api import BrowserContext, Route, expect, sync_playwright

from tests.e2e.support import patient, study
from tests.e2e.test_serve import TOKEN, running_hub
from tests.support.browser import CHROMIUM, CHROMIUM_FLAGS

REDIRECT = "http://localhost:9/callback"  # never contacted: the browser's request is intercepted


@pytest.fixture
def browser(tmp_path: Path) -> Iterator[BrowserContext]:
    """Debian's chromium with a fresh profile (never ``playwright install``)."""
    with sync_playwright() as p:
        context = p.chromium.launch_persistent_context(
            str(tmp_path / "chromium-profile"),
            executable_path=CHROMIUM,
            headless=True,
            args=CHROMIUM_FLAGS,
        )
        try:
            yield context
        finally:
            context.close()


def cli(*args: str, stdin: str = "") -> str:
    done = subprocess.run(
        [sys.executable, "-m", "hub", *args], input=stdin, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_standalone_launch_in_chromium_with_fhirclient(
    tmp_path: Path,
    browser: BrowserContext,
    monkeypatch: pytest.MonkeyPatch,
    request: pytest.FixtureRequest,
) -> None:
    monkeypatch.setenv("PIXELHUB_CHANNELS", "http")
    data = tmp_path / "data"
    password = "s3cure-enough-pw"
    cli(
        "users", "add", "dr-who", "--role", "clinician", "--fhir-user", "Practitioner/p9",
        "--data-dir", str(data), stdin=f"{password}\n{password}\n",
    )  # fmt: skip
    out = cli(
        "clients", "add", "viewer", "--type", "public", "--redirect-uri", REDIRECT,
        "--scope", "openid fhirUser launch/patient offline_access user/*.rs",
        "--data-dir", str(data),
    )  # fmt: skip
    client_id = out.split("client_id: ", 1)[1].split()[0]
    assert "dr-who" in cli("users", "list", "--data-dir", str(data))

    with running_hub(data) as (_, url):
        admin = {"Authorization": f"Bearer {TOKEN}"}
        pid = httpx.post(f"{url}/fhir/Patient", json=patient(), headers=admin).json()["id"]
        other = patient(family="Okafor", mrn="M2")
        httpx.post(f"{url}/fhir/Patient", json=other, headers=admin)
        httpx.post(f"{url}/fhir/ImagingStudy", json=study(f"Patient/{pid}"), headers=admin)
        document = {
            "resourceType": "DocumentReference",
            "status": "current",
            "subject": {"reference": f"Patient/{pid}"},
            "content": [{"attachment": {"contentType": "application/pdf", "url": "urn:x:1"}}],
        }
        httpx.post(f"{url}/fhir/DocumentReference", json=document, headers=admin)

        app = smart_client.FHIRClient(
            settings={
                "app_id": client_id,
                "api_base": f"{url}/fhir",
                "redirect_uri": REDIRECT,
                "scope": "openid fhirUser offline_access user/*.rs",
            }
        )
        request.addfinalizer(app.server.session.close)  # fhirclient never closes its session
        app.prepare()
        authorize_url = app.authorize_url
        assert authorize_url.startswith(f"{url}/auth/authorize?")

        page = browser.new_page()
        callbacks: list[str] = []

        def capture(route: Route) -> None:
            callbacks.append(route.request.url)
            route.fulfill(status=200, body="done", content_type="text/plain")

        page.route("http://localhost:9/**", capture)
        page.goto(authorize_url)
        assert page.title() == "Sign in - PixelHub"
        page.get_by_label("User name").fill("dr-who")
        page.get_by_label("Password").fill("wrong password")
        page.get_by_role("button", name="Sign in").click()
        expect(page.get_by_role("alert")).to_have_text("Wrong user name or password.")
        page.get_by_label("User name").fill("dr-who")
        page.get_by_label("Password").fill(password)
        page.get_by_role("button", name="Sign in").click()
        expect(page.get_by_role("heading")).to_have_text("Choose a patient")
        page.get_by_label("Maria Garcia (born 1968-04-12)").check()
        page.get_by_role("button", name="Continue").click()
        expect(page.get_by_role("heading")).to_have_text("Allow access?")
        assert "Patient: Maria Garcia" in page.content()
        page.get_by_role("button", name="Allow").click()
        page.wait_for_url("http://localhost:9/**")
        assert len(callbacks) == 1

        app.handle_callback(callbacks[0])
        assert app.ready
        assert app.patient_id == pid
        studies = list(
            ImagingStudy.where({"subject": f"Patient/{pid}"}).perform_resources_iter(app.server)
        )
        assert [s.subject.reference for s in studies] == [f"Patient/{pid}"]
        documents = list(DocumentReference.where({}).perform_resources_iter(app.server))
        assert len(documents) == 1
        # the refresh token works through fhirclient too (rotation)
        old_refresh = app.server.auth.refresh_token
        assert app.reauthorize()
        assert app.server.auth.refresh_token != old_refresh
        r = httpx.post(
            f"{url}/auth/token",
            data={
                "grant_type": "refresh_token",
                "refresh_token": old_refresh,
                "client_id": client_id,
            },
        )
        assert json.loads(r.text)["error"] == "invalid_grant"


def test_ehr_launch_in_chromium_with_fhirclient(
    tmp_path: Path,
    browser: BrowserContext,
    monkeypatch: pytest.MonkeyPatch,
    request: pytest.FixtureRequest,
) -> None:
    """SMART App Launch 2.2 §"Launch App: EHR Launch": the EHR (a confidential client with the
    ``pixelhub.launch`` scope) registers the context, fhirclient gets the launch id as its
    ``launch_token`` and the context back from the token endpoint."""
    monkeypatch.setenv("PIXELHUB_CHANNELS", "http")
    data = tmp_path / "data"
    password = "s3cure-enough-pw"
    cli(
        "users", "add", "dr-who", "--role", "clinician", "--fhir-user", "Practitioner/p9",
        "--data-dir", str(data), stdin=f"{password}\n{password}\n",
    )  # fmt: skip
    out = cli(
        "clients", "add", "viewer", "--type", "public", "--redirect-uri", REDIRECT,
        "--scope", "launch openid fhirUser online_access user/*.rs", "--data-dir", str(data),
    )  # fmt: skip
    client_id = out.split("client_id: ", 1)[1].split()[0]
    out = cli(
        "clients", "add", "ehr", "--type", "confidential-symmetric",
        "--scope", "pixelhub.launch", "--data-dir", str(data),
    )  # fmt: skip
    ehr_id = out.split("client_id: ", 1)[1].split()[0]
    ehr_secret = out.split("client_secret: ", 1)[1].split()[0]

    with running_hub(data) as (_, url):
        admin = {"Authorization": f"Bearer {TOKEN}"}
        pid = httpx.post(f"{url}/fhir/Patient", json=patient(), headers=admin).json()["id"]
        created = httpx.post(
            f"{url}/fhir/ImagingStudy", json=study(f"Patient/{pid}"), headers=admin
        )
        study_id = created.json()["id"]

        # the EHR: a token for the launch API, then the launch context
        r = httpx.post(
            f"{url}/auth/token",
            data={"grant_type": "client_credentials", "scope": "pixelhub.launch"},
            auth=(ehr_id, ehr_secret),
        )
        assert r.status_code == 200, r.text
        fhir_context = [{"reference": f"ImagingStudy/{study_id}"}]
        r = httpx.post(
            f"{url}/auth/launch",
            json={
                "patient": pid,
                "encounter": "enc-42",
                "fhirContext": fhir_context,
                "need_patient_banner": False,
                "smart_style_url": "https://ehr.example.org/style.json",
                "user": "dr-who",
                "client_id": client_id,
            },
            headers={"Authorization": f"Bearer {r.json()['access_token']}"},
        )
        assert r.status_code == 201, r.text
        launch_id = r.json()["launch"]

        # the app, launched with ?iss=<FHIR base>&launch=<id>
        app = smart_client.FHIRClient(
            settings={
                "app_id": client_id,
                "api_base": f"{url}/fhir",
                "redirect_uri": REDIRECT,
                "launch_token": launch_id,
                "scope": "openid fhirUser online_access user/*.rs",
            }
        )
        request.addfinalizer(app.server.session.close)  # fhirclient never closes its session
        app.prepare()
        authorize_url = app.authorize_url
        assert "launch=" in authorize_url and "scope=launch+" in authorize_url

        page = browser.new_page()
        callbacks: list[str] = []

        def capture(route: Route) -> None:
            callbacks.append(route.request.url)
            route.fulfill(status=200, body="done", content_type="text/plain")

        page.route("http://localhost:9/**", capture)
        page.goto(authorize_url)
        page.get_by_label("User name").fill("dr-who")
        page.get_by_label("Password").fill(password)
        page.get_by_role("button", name="Sign in").click()
        # the EHR chose the patient: no picker
        expect(page.get_by_role("heading")).to_have_text("Allow access?")
        assert "Patient: Maria Garcia" in page.content()
        page.get_by_role("button", name="Allow").click()
        page.wait_for_url("http://localhost:9/**")

        app.handle_callback(callbacks[0])
        assert app.ready
        assert app.patient_id == pid
        context = app.launch_context
        assert context["encounter"] == "enc-42"
        assert context["fhirContext"] == fhir_context
        assert context["need_patient_banner"] is False
        assert context["smart_style_url"] == "https://ehr.example.org/style.json"
        studies = list(
            ImagingStudy.where({"subject": f"Patient/{pid}"}).perform_resources_iter(app.server)
        )
        assert [s.id for s in studies] == [study_id]

        # online_access: refresh works while signed in, not after signing out in the browser
        assert app.reauthorize()
        page.goto(f"{url}/auth/logout")
        page.get_by_role("button", name="Sign out").click()
        expect(page.get_by_role("heading")).to_have_text("Signed out")
        r = httpx.post(
            f"{url}/auth/token",
            data={
                "grant_type": "refresh_token",
                "refresh_token": app.server.auth.refresh_token,
                "client_id": client_id,
            },
        )
        assert json.loads(r.text)["error"] == "invalid_grant"

        # the launch id was spent
        r = httpx.get(authorize_url, follow_redirects=False)
        assert "error=invalid_request" in r.headers["location"]
