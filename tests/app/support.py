"""A real ``pixelhub serve`` for the imaging timeline tests (issue 13), set up the way an
operator would (README "Imaging timeline"): a clinician user (``pixelhub users add``), the app
registered as a public SMART client for ``<origin>/app/`` (``pixelhub clients add``) and named
by ``PIXELHUB_APP_CLIENT_ID``, an EHR registered as a confidential client with the
``pixelhub.launch`` scope; then two patients' imaging records: CT studies stored over STOW-RS,
photos uploaded to ``POST /media`` (one wrapped as DICOM), orders, encounters and reports as FHIR
resources. Output goes to a file, never to an unread pipe.
"""

from __future__ import annotations

import io
import os
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import httpx
import numpy as np
from PIL import Image
from playwright.sync_api import Page, expect
from pydicom.dataset import Dataset
from pydicom.uid import generate_uid

from hub.http.app_routes import APP_SCOPES
from tests.integration.dicom.conftest import stop_process
from tests.integration.dicom.dicom_support import free_port, make_ct

TOKEN = "app-test-token"
PASSWORD = "s3cure-enough-pw"
USER = "dr-who"
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts" / "app"
APP_DIST = Path(__file__).resolve().parents[2] / "app" / "dist"
DICOM_MULTIPART = 'multipart/related; type="application/dicom"; boundary={}'
BOUNDARY = "PixelHubAppTestBoundary"


def cli(data_dir: Path, *args: str, stdin: str = "") -> str:
    done = subprocess.run(
        [sys.executable, "-m", "hub", *args, "--data-dir", str(data_dir)],
        input=stdin, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    return done.stdout


def client_id_of(output: str) -> str:
    return output.split("client_id: ", 1)[1].split()[0]


@dataclass
class Patient:
    id: str
    name: str  # as the banner shows it
    study_uid: str  # the CT study (3 frames)
    study_id: str
    titles: list[str] = field(default_factory=list)  # every title its timeline shows


@dataclass
class AppHub:
    url: str
    data_dir: Path
    process: subprocess.Popen[bytes]
    log: IO[bytes]
    client_id: str  # the app (PIXELHUB_APP_CLIENT_ID)
    narrow_client_id: str  # the app registered without DiagnosticReport access
    ehr_id: str
    ehr_secret: str
    patients: dict[str, Patient] = field(default_factory=dict)

    @property
    def fhir(self) -> str:
        return f"{self.url}/fhir"

    def http(self, token: str | None = TOKEN) -> httpx.Client:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        return httpx.Client(base_url=self.url, headers=headers, timeout=60)

    def launch(self, patient_id: str, **extra: Any) -> str:
        """The EHR's part of an EHR launch (SMART App Launch 2.2 §"Launch App: EHR Launch"):
        a ``client_credentials`` token with ``pixelhub.launch``, then ``POST /auth/launch``."""
        r = httpx.post(
            f"{self.url}/auth/token",
            data={"grant_type": "client_credentials", "scope": "pixelhub.launch"},
            auth=(self.ehr_id, self.ehr_secret),
        )
        assert r.status_code == 200, r.text
        body = {"patient": patient_id, "user": USER, "client_id": self.client_id, **extra}
        r = httpx.post(
            f"{self.url}/auth/launch",
            json=body,
            headers={"Authorization": f"Bearer {r.json()['access_token']}"},
        )
        assert r.status_code == 201, r.text
        return str(r.json()["launch"])


def start_app_hub(workdir: Path, extra_env: dict[str, str] | None = None) -> AppHub:
    """Users and clients first (the CLI, as the README says), then ``pixelhub serve``."""
    data_dir = workdir / "data"
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    cli(
        data_dir, "users", "add", USER, "--role", "clinician", "--fhir-user", "Practitioner/p9",
        stdin=f"{PASSWORD}\n{PASSWORD}\n",
    )  # fmt: skip
    scopes = " ".join(APP_SCOPES)
    client_id = client_id_of(
        cli(data_dir, "clients", "add", "timeline", "--type", "public",
            "--redirect-uri", f"{url}/app/", "--scope", scopes)
    )  # fmt: skip
    narrow = " ".join(s for s in APP_SCOPES if s != "patient/DiagnosticReport.rs")
    narrow_id = client_id_of(
        cli(data_dir, "clients", "add", "timeline-narrow", "--type", "public",
            "--redirect-uri", f"{url}/app/", "--scope", narrow)
    )  # fmt: skip
    out = cli(
        data_dir, "clients", "add", "ehr", "--type", "confidential-symmetric",
        "--scope", "pixelhub.launch",
    )  # fmt: skip
    ehr_id, ehr_secret = client_id_of(out), out.split("client_secret: ", 1)[1].split()[0]
    env = {
        **os.environ,
        "PIXELHUB_AUTH_TOKENS": TOKEN,
        "PIXELHUB_CHANNELS": "dicomweb,media",
        "PIXELHUB_DICOM_AGGREGATION_QUIET_SECONDS": "0.3",
        "PIXELHUB_APP_CLIENT_ID": client_id,
        "PIXELHUB_APP_VIEWER_URL_TEMPLATE": "https://viewer.example/viewer?StudyInstanceUIDs={StudyInstanceUID}",
        **(extra_env or {}),
    }
    log = open(workdir / "serve.log", "wb")  # noqa: SIM115 (closed with the process)
    process = subprocess.Popen(
        [sys.executable, "-m", "hub", "serve", "--http-port", str(port), "--data-dir", str(data_dir)],
        env=env, stdout=log, stderr=subprocess.STDOUT,
    )  # fmt: skip
    deadline = time.monotonic() + 60
    while not (data_dir / "ports.json").exists():
        if process.poll() is not None or time.monotonic() > deadline:
            stop_process(process)
            log.close()
            output = (workdir / "serve.log").read_text(errors="replace")
            raise RuntimeError(f"pixelhub serve did not start:\n{output[-3000:]}")
        time.sleep(0.05)
    return AppHub(url, data_dir, process, log, client_id, narrow_id, ehr_id, ehr_secret)


def stop_app_hub(hub: AppHub) -> None:
    stop_process(hub.process)
    hub.log.close()


# ---------------------------------------------------------------------------------- the data


def ct(study: str, series: str, patient_id: str, name: str, number: int, date: str) -> Dataset:
    """A 64x64 CT with a ramp of values (HU -1024..3071) and a bright square that moves with
    the instance number, so each frame and each window renders differently."""
    ds = make_ct(
        sop=generate_uid(), study=study, series=series, patient_id=patient_id, name=name, rows=64
    )
    pixels = np.linspace(0, 4095, 64 * 64).round().astype(np.uint16).reshape(64, 64)
    pixels[8 * number : 8 * number + 16, 8:24] = 4000
    ds.BitsStored, ds.HighBit = 12, 11
    ds.PixelData = pixels.tobytes()
    ds.RescaleIntercept, ds.RescaleSlope = -1024, 1
    ds.WindowCenter, ds.WindowWidth = 40, 400
    ds.InstanceNumber = number
    ds.StudyDate = date
    ds.StudyDescription = "CT chest with contrast"
    ds.SeriesDescription = "Axial 5 mm"
    ds.PerformingPhysicianName = "Tech^Terry"
    ds.AccessionNumber = f"ACC-{patient_id}"
    return ds


def encode(ds: Dataset) -> bytes:
    buffer = io.BytesIO()
    ds.save_as(buffer, enforce_file_format=True)
    return buffer.getvalue()


def stow(hub: AppHub, datasets: list[Dataset]) -> None:
    body = (
        b"".join(
            f"--{BOUNDARY}\r\nContent-Type: application/dicom\r\n\r\n".encode()
            + encode(ds)
            + b"\r\n"
            for ds in datasets
        )
        + f"--{BOUNDARY}--\r\n".encode()
    )
    with hub.http() as c:
        r = c.post(
            "/dicomweb/studies", content=body,
            headers={"Content-Type": DICOM_MULTIPART.format(BOUNDARY)},
        )  # fmt: skip
    assert r.status_code == 200, r.text


def wait_for_study(hub: AppHub, uid: str) -> dict[str, Any]:
    deadline = time.monotonic() + 30
    with hub.http() as c:
        while True:
            bundle = c.get(
                "/fhir/ImagingStudy", params={"identifier": f"urn:dicom:uid|urn:oid:{uid}"}
            ).json()
            if bundle.get("entry"):
                return dict(bundle["entry"][0]["resource"])
            assert time.monotonic() < deadline, f"study {uid} not aggregated"
            time.sleep(0.1)


def photo(colour: tuple[int, int, int], size: tuple[int, int] = (320, 240)) -> bytes:
    image = Image.new("RGB", size, colour)
    image.paste((255, 255, 255), (size[0] // 4, size[1] // 4, size[0] // 2, size[1] // 2))
    out = io.BytesIO()
    image.save(out, "JPEG", quality=90)
    return out.getvalue()


def post(hub: AppHub, resource: dict[str, Any]) -> dict[str, Any]:
    with hub.http() as c:
        r = c.post(f"/fhir/{resource['resourceType']}", json=resource)
    assert r.status_code == 201, r.text
    return dict(r.json())


def upload(hub: AppHub, data: bytes, **fields: str) -> dict[str, Any]:
    with hub.http() as c:
        r = c.post("/media", data=fields, files={"file": ("capture.jpg", data, "image/jpeg")})
    assert r.status_code in (200, 201), r.text
    return dict(r.json())


def load_patient(
    hub: AppHub,
    key: str,
    mrn: str,
    family: str,
    given: str,
    date: str,
    colour: tuple[int, int, int],
) -> Patient:
    """One patient's record: a 3-image CT study (STOW-RS), its order and report, an encounter,
    a wound photo (POST /media) and a dermatology photo wrapped as DICOM."""
    study_uid, series = generate_uid(), generate_uid()
    stow(hub, [ct(study_uid, series, mrn, f"{family}^{given}", n, date) for n in (1, 2, 3)])
    study = wait_for_study(hub, study_uid)
    patient_ref = study["subject"]["reference"]
    patient_id = patient_ref.split("/")[1]
    encounter = post(hub, {
        "resourceType": "Encounter", "status": "finished",
        "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "AMB", "display": "ambulatory"},
        "type": [{"text": f"Oncology clinic {key}"}],
        "subject": {"reference": patient_ref},
        "period": {"start": f"{date[:4]}-{date[4:6]}-{date[6:]}T09:00:00Z"},
    })  # fmt: skip
    order = post(hub, {
        "resourceType": "ServiceRequest", "status": "completed", "intent": "order",
        "code": {"text": f"CT chest {key}"},
        "identifier": [{"type": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v2-0203", "code": "ACSN"}]},
                        "system": "urn:pixelhub:accession", "value": f"ACC-{mrn}"}],
        "subject": {"reference": patient_ref},
    })  # fmt: skip
    report_title = f"CT chest report {key}"
    post(hub, {
        "resourceType": "DiagnosticReport", "status": "final",
        "category": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v2-0074", "code": "RAD"}]}],
        "code": {"text": report_title},
        "subject": {"reference": patient_ref},
        "encounter": {"reference": f"Encounter/{encounter['id']}"},
        "basedOn": [{"reference": f"ServiceRequest/{order['id']}"}],
        "imagingStudy": [{"reference": f"ImagingStudy/{study['id']}"}],
        "effectiveDateTime": f"{date[:4]}-{date[4:6]}-{date[6:]}T15:00:00Z",
        "performer": [{"display": "Dr Rita Reader"}],
        "conclusion": f"No acute findings ({key}).",
    })  # fmt: skip
    wound = f"Wound photo left foot {key}"
    upload(
        hub, photo(colour), patient=patient_ref, ology="wound-care", modality="XC",
        bodySite="foot", laterality="left", description=wound,
        encounter=f"Encounter/{encounter['id']}", captured="2025-06-01T10:00:00Z",
    )  # fmt: skip
    skin = f"Skin lesion back {key}"
    wrapped = upload(
        hub, photo((colour[2], colour[0], colour[1])), patient=patient_ref, ology="dermatology",
        modality="XC", bodySite="back", description=skin, captured="2025-09-15T11:30:00Z",
        wrap="dicom",
    )  # fmt: skip
    for related in wrapped.get("context", {}).get("related", []):
        identifier = related.get("identifier", {})
        if identifier.get("system") == "urn:dicom:uid":
            wait_for_study(hub, identifier["value"].removeprefix("urn:oid:"))
    name = f"{given} {family}"
    return Patient(
        patient_id,
        name,
        study_uid,
        study["id"],
        titles=["CT chest with contrast", report_title, wound, skin],
    )


def load_data(hub: AppHub) -> None:
    hub.patients["a"] = load_patient(hub, "A", "TL-A", "Garcia", "Maria", "20260302", (200, 40, 40))
    hub.patients["b"] = load_patient(hub, "B", "TL-B", "Okafor", "Chidi", "20260110", (40, 160, 60))


def artifacts() -> Path:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    return ARTIFACTS


def sign_in(
    page: Page, pick: str | None = None, *, user: str = USER, password: str = PASSWORD
) -> None:
    """PixelHub's own sign-in page, its patient picker (choosing ``pick``) and its consent page,
    as a user goes through them (SMART App Launch, authorization code with PKCE)."""
    expect(page).to_have_title("Sign in - PixelHub")
    page.get_by_label("User name").fill(user)
    page.get_by_label("Password").fill(password)
    page.get_by_role("button", name="Sign in").click()
    if pick is not None:
        expect(page.get_by_role("heading")).to_have_text("Choose a patient")
        page.get_by_label(pick).check()
        page.get_by_role("button", name="Continue").click()
    expect(page.get_by_role("heading")).to_have_text("Allow access?")
    page.get_by_role("button", name="Allow").click()
