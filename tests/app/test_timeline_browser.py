"""The imaging timeline in headless Debian chromium (issue 13): EHR launch from a simulated
EHR, standalone launch with PixelHub's patient picker, the compare view on DICOMweb rendered
frames, a patient-scoped token that cannot show another patient, a token lacking a scope,
tokens never in localStorage, keyboard use, federated items marked with their site.
Screenshots go to test-artifacts/app/."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from urllib.parse import quote

import pytest
from playwright.sync_api import Locator, Page, Request, expect

from hub.demo import DEMO_PASSWORD, DEMO_USER
from tests.app.support import AppHub, artifacts, cli, free_port, sign_in
from tests.integration.dicom.conftest import stop_process

PAINTED = "html[data-timeline-painted]"


def ehr_launch(page: Page, hub: AppHub, patient: str, **context: object) -> None:
    """The EHR registers the launch and opens the app's launch URL; the user signs in."""
    launch = hub.launch(hub.patients[patient].id, **context)
    page.goto(f"{hub.url}/app/launch.html?iss={quote(hub.fhir, safe='')}&launch={launch}")
    sign_in(page)
    page.wait_for_selector(PAINTED)


def card(page: Page, title: str) -> Locator:
    """The timeline card whose title is exactly ``title``."""
    return page.locator(".card").filter(has=page.get_by_role("heading", name=title, exact=True))


def titles(page: Page) -> list[str]:
    return page.locator(".card-title").all_inner_texts()


def shot(page: Page, name: str) -> None:
    page.screenshot(path=str(artifacts() / f"{name}.png"), full_page=True)


def stored_token(page: Page) -> str:
    state = page.evaluate(
        "() => JSON.parse(sessionStorage.getItem(JSON.parse(sessionStorage.getItem('SMART_KEY'))))"
    )
    return str(state["tokenResponse"]["access_token"])


def app_fetch(page: Page, url: str, accept: str = "application/fhir+json") -> int:
    """A request with the app's own token, from the page."""
    token = stored_token(page)
    return int(
        page.evaluate(
            "async ([url, token, accept]) => (await fetch(url, {headers: {Authorization: `Bearer ${token}`,"
            " Accept: accept}})).status",
            [url, token, accept],
        )
    )


def test_ehr_launch_shows_the_launched_patient_only(app_hub: AppHub, page: Page) -> None:
    a, b = app_hub.patients["a"], app_hub.patients["b"]
    ehr_launch(page, app_hub, "a")
    assert page.url == f"{app_hub.url}/app/"  # code and state gone from the address bar
    expect(page.locator(".patient-name")).to_have_text(a.name)
    shown = titles(page)
    assert sorted(shown) == sorted(a.titles), shown  # the wrapped photo is one item, not two
    content = page.content()
    assert b.name not in content and "B)" not in content
    assert all(not t.endswith(" B") for t in shown)
    ct = card(page, "CT chest with contrast")
    expect(ct).to_contain_text("Report: CT chest report A")
    expect(ct).to_contain_text("Order: CT chest A · accession ACC-TL-A · completed")
    expect(ct).to_contain_text("Radiology")
    expect(ct).to_contain_text("By Terry Tech")
    report = card(page, "CT chest report A")
    expect(report).to_contain_text("By Dr Rita Reader")
    expect(report).to_contain_text("About: CT chest with contrast")
    wound = card(page, "Wound photo left foot A")
    expect(wound).to_contain_text("Encounter: Oncology clinic A, 2026-03-02")
    # thumbnails: WADO-RS for the study, the capture's thumbnail for photos, loaded with the token
    for title in ("CT chest with contrast", "Wound photo left foot A", "Skin lesion back A"):
        image = card(page, title).locator("img")
        expect(image).to_have_attribute("alt", re.compile(f"^Preview of {title}"))
        page.wait_for_function(
            "img => img.complete && img.naturalWidth > 0", arg=image.element_handle()
        )
    # filters: ology, modality, body site, encounter
    page.get_by_label("Ology").select_option("Dermatology")
    assert titles(page) == ["Skin lesion back A"]
    expect(page.get_by_role("status").filter(has_text="items")).to_have_text("1 of 4 items")
    page.get_by_role("button", name="Clear filters").click()
    page.get_by_label("Modality").select_option("CT")
    assert titles(page) == ["CT chest with contrast"]
    page.get_by_label("Modality").select_option("")
    page.get_by_label("Encounter").select_option("Oncology clinic A, 2026-03-02")
    assert sorted(titles(page)) == ["CT chest report A", "Wound photo left foot A"]
    page.get_by_role("button", name="Clear filters").click()
    assert len(titles(page)) == 4
    shot(page, "ehr-launch-timeline")
    # tokens live in sessionStorage only
    assert page.evaluate("() => localStorage.length") == 0
    assert stored_token(page).count(".") == 2
    page.set_viewport_size({"width": 390, "height": 844})  # a phone
    shot(page, "timeline-narrow")


def test_standalone_launch_with_the_patient_picker(app_hub: AppHub, page: Page) -> None:
    a, b = app_hub.patients["a"], app_hub.patients["b"]
    page.goto(f"{app_hub.url}/app/")
    sign_in(page, pick=f"{b.name} (born 1970-01-01)")
    page.wait_for_selector(PAINTED)
    expect(page.locator(".patient-name")).to_have_text(b.name)
    assert sorted(titles(page)) == sorted(b.titles)
    assert a.name not in page.content()
    assert page.evaluate("() => localStorage.length") == 0
    shot(page, "standalone-timeline")
    # a reload keeps the session (sessionStorage), without signing in again; an access token
    # due to expire is refreshed first (online_access: a public client names itself)
    before = stored_token(page)
    page.evaluate(
        """() => {
          const key = JSON.parse(sessionStorage.getItem('SMART_KEY'));
          const state = JSON.parse(sessionStorage.getItem(key));
          state.expiresAt = Math.floor(Date.now() / 1000) - 1;
          sessionStorage.setItem(key, JSON.stringify(state));
        }"""
    )
    with page.expect_response(lambda r: r.url.endswith("/auth/token")) as refreshed:
        page.reload()
    assert refreshed.value.status == 200
    assert "grant_type=refresh_token" in (refreshed.value.request.post_data or "")
    page.wait_for_selector(PAINTED)
    assert sorted(titles(page)) == sorted(b.titles)
    assert stored_token(page) != before
    assert page.evaluate("() => localStorage.length") == 0


def test_compare_view_navigates_frames_and_windows(app_hub: AppHub, page: Page) -> None:
    a = app_hub.patients["a"]
    ehr_launch(page, app_hub, "a")
    rendered: list[str] = []

    def seen(request: Request) -> None:
        if "/rendered" in request.url:
            rendered.append(request.url)

    page.on("request", seen)
    page.get_by_label("Compare CT chest with contrast").check()
    page.get_by_label("Compare Skin lesion back A").check()
    page.get_by_role("button", name="Compare (2)").click()
    expect(page.get_by_role("heading", name="Compare 2 items")).to_be_visible()
    panels = page.locator(".panel")
    expect(panels).to_have_count(2)
    ct = panels.filter(has_text="CT chest with contrast")
    image = ct.locator(".stage img")
    expect(ct.locator(".frame-count")).to_have_text("Frame 1 of 3")
    expect(image).to_have_attribute("data-request", re.compile(r"/frames/1/rendered\?viewport="))
    assert image.get_attribute("data-request").startswith(
        f"/dicomweb/studies/{a.study_uid}/series/"
    )
    first, first_request = image.get_attribute("src"), image.get_attribute("data-request")
    ct.get_by_role("button", name="Next frame").click()
    expect(ct.locator(".frame-count")).to_have_text("Frame 2 of 3")
    expect(image).not_to_have_attribute("data-request", first_request or "")
    expect(image).to_have_attribute(
        "data-request", re.compile(r"/instances/[0-9.]+/frames/1/rendered")
    )
    assert image.get_attribute("src") != first
    ct.get_by_label("Window").select_option(label="Lung (-600/1500)")
    expect(image).to_have_attribute("data-request", re.compile(r"&window=-600,1500$"))
    assert any("window=-600,1500" in url for url in rendered)
    ct.get_by_label("Center").fill("300")
    ct.get_by_label("Width").fill("900")
    expect(image).to_have_attribute("data-request", re.compile(r"&window=300,900$"))
    # keyboard on the image: arrow keys step through the frames
    ct.locator(".stage").focus()
    page.keyboard.press("ArrowDown")
    expect(ct.locator(".frame-count")).to_have_text("Frame 3 of 3")
    page.keyboard.press("Home")
    expect(ct.locator(".frame-count")).to_have_text("Frame 1 of 3")
    ct.get_by_role("button", name="Zoom in").click()
    expect(ct.locator("output").filter(has_text="%")).to_have_text("150%")
    viewer = ct.get_by_role("link", name=re.compile("Open in diagnostic viewer"))
    expect(viewer).to_have_attribute(
        "href", f"https://viewer.example/viewer?StudyInstanceUIDs={a.study_uid}"
    )
    photo = panels.filter(has_text="Skin lesion back A").locator(".stage img")
    expect(photo).to_have_attribute("data-request", re.compile(r"^/media/[^/]+/preview$"))
    page.wait_for_function(
        "img => img.complete && img.naturalWidth > 0", arg=photo.element_handle()
    )
    shot(page, "compare")
    page.get_by_role("button", name="Back to timeline").click()
    page.wait_for_selector(".card")
    expect(page.locator(":focus")).to_have_text("CT chest with contrast")


def test_a_patient_scoped_token_cannot_show_another_patient(app_hub: AppHub, page: Page) -> None:
    a, b = app_hub.patients["a"], app_hub.patients["b"]
    ehr_launch(page, app_hub, "a")
    fhir = app_hub.fhir
    with app_hub.http() as c:
        b_docs = c.get("/fhir/DocumentReference", params={"patient": b.id}).json()["entry"]
    # the app's token, used by hand for the other patient: nothing
    assert app_fetch(page, f"{fhir}/Patient/{b.id}") == 404
    assert app_fetch(page, f"{fhir}/ImagingStudy/{b.study_id}") == 404
    assert app_fetch(
        page, f"{app_hub.url}/dicomweb/studies/{b.study_uid}/thumbnail", "image/jpeg"
    ) in (
        403,
        404,
    )
    doc_id = b_docs[0]["resource"]["id"]
    assert app_fetch(page, f"{app_hub.url}/media/{doc_id}/thumbnail", "image/jpeg") in (403, 404)
    total = page.evaluate(
        "async ([url, token]) => (await (await fetch(url, {headers: {Authorization: `Bearer ${token}`}})).json()).entry?.length ?? 0",
        [f"{fhir}/ImagingStudy?patient={b.id}", stored_token(page)],
    )
    assert total == 0
    assert app_fetch(page, f"{fhir}/Patient/{a.id}") == 200  # the same requests for A: fine
    thumbnail = f"{app_hub.url}/dicomweb/studies/{a.study_uid}/thumbnail"
    assert app_fetch(page, thumbnail, "image/jpeg") == 200
    # tampering with the app's stored patient: refused, whatever the stored state says
    page.evaluate(
        """(other) => {
          const key = JSON.parse(sessionStorage.getItem('SMART_KEY'));
          const state = JSON.parse(sessionStorage.getItem(key));
          state.tokenResponse.patient = other;
          sessionStorage.setItem(key, JSON.stringify(state));
        }""",
        b.id,
    )
    page.reload()
    expect(page.get_by_role("heading", name="Patient not available")).to_be_visible()
    assert b.name not in page.content()
    shot(page, "tampered-patient")
    # ...and through the URL: fhirclient's development parameters are refused
    for path in (
        f"/app/launch.html?iss={quote(fhir, safe='')}&launch=x&patientId={b.id}",
        f"/app/?patientId={b.id}",
        f"/app/?fhirServiceUrl={quote(fhir, safe='')}&patientId={b.id}",
    ):
        page.goto(app_hub.url + path)
        expect(page.get_by_role("heading", name="This launch cannot be used")).to_be_visible()
        assert b.name not in page.content()
    # an iss that is not this PixelHub is refused before anything is sent anywhere
    page.goto(
        f"{app_hub.url}/app/launch.html?iss={quote('https://evil.example/fhir', safe='')}&launch=x"
    )
    expect(page.get_by_role("alert")).to_contain_text("another FHIR server")


def test_a_token_lacking_a_scope_shows_missing_permission(app_hub: AppHub, page: Page) -> None:
    """The app registered without ``patient/DiagnosticReport.rs``: PixelHub grants the rest,
    the app says what is missing instead of showing a partial record."""

    def narrow(route: object) -> None:
        response = route.fetch()  # type: ignore[attr-defined]
        config = response.json()
        config["clientId"] = app_hub.narrow_client_id
        route.fulfill(response=response, json=config)  # type: ignore[attr-defined]

    page.route(f"{app_hub.url}/app/config.json", narrow)
    page.goto(f"{app_hub.url}/app/")
    sign_in(page, pick=f"{app_hub.patients['a'].name} (born 1970-01-01)")
    expect(page.get_by_role("heading", name="Missing permission")).to_be_visible()
    expect(page.locator("main")).to_contain_text("DiagnosticReport")
    expect(page.locator("main")).to_contain_text("patient/DiagnosticReport.rs")
    assert page.locator(".card").count() == 0
    expect(page.get_by_role("button", name="Sign in again")).to_be_visible()
    shot(page, "missing-permission")


def test_keyboard_only_use_and_labels(app_hub: AppHub, page: Page) -> None:
    ehr_launch(page, app_hub, "a")
    # Tab from the top reaches the first item's title button; Enter opens it
    page.locator("body").focus()
    for _ in range(40):
        page.keyboard.press("Tab")
        if page.evaluate("() => document.activeElement?.matches('.card button.link') ?? false"):
            break
    else:
        raise AssertionError("Tab never reached a timeline item")
    title = page.evaluate("() => document.activeElement.textContent")
    page.keyboard.press("Enter")
    dialog = page.get_by_role("dialog")
    expect(dialog).to_be_visible()
    expect(dialog.get_by_role("heading", level=2)).to_have_text(title)
    shot(page, "item-detail")
    page.keyboard.press("Escape")
    expect(dialog).to_have_count(0)
    # the route goes back to the timeline, whose effect puts the focus back on the title: wait
    # for both, or a Tab pressed before that effect runs is undone by it
    expect(page).to_have_url(re.compile(r"#/$"))
    page.evaluate("() => new Promise(done => requestAnimationFrame(() => setTimeout(done, 50)))")
    expect(page.locator(":focus")).to_have_text(title)
    # Tab onwards: the next item's button is reachable too
    page.keyboard.press("Tab")  # its compare checkbox
    page.keyboard.press("Space")
    expect(page.locator(".tray")).to_contain_text("1 of 4 picked")
    # every image has alt text, every control a label
    page.wait_for_function("() => document.querySelectorAll('.card img').length >= 3")
    assert page.evaluate("() => [...document.images].every(i => i.alt.trim().length > 0)")
    unlabelled = page.evaluate(
        """() => [...document.querySelectorAll('input, select, button')]
            .filter(e => !(e.labels?.length || e.getAttribute('aria-label') || e.textContent.trim()))
            .map(e => e.outerHTML)"""
    )
    assert unlabelled == []
    assert page.evaluate("() => document.documentElement.lang") == "en"


# WCAG 2.2 SC 1.4.3 (contrast, minimum): the contrast ratio of every piece of visible text with
# the background it is drawn on, the relative luminance as WCAG defines it; 4.5:1, or 3:1 for
# large text (18pt, or 14pt bold).
_CONTRAST = """() => {
  const lin = c => { c /= 255; return c <= 0.04045 ? c / 12.92 : ((c + 0.055) / 1.055) ** 2.4; };
  const rgba = s => (s.match(/[0-9.]+/g) || []).map(Number);
  const lum = ([r, g, b]) => 0.2126 * lin(r) + 0.7152 * lin(g) + 0.0722 * lin(b);
  const background = el => {
    for (let e = el; e; e = e.parentElement) {
      const c = rgba(getComputedStyle(e).backgroundColor);
      if (c.length >= 3 && (c.length < 4 || c[3] > 0.5)) return c;
    }
    return [255, 255, 255];
  };
  const failures = [];
  const walker = document.createTreeWalker(document.body, NodeFilter.SHOW_TEXT);
  for (let n = walker.nextNode(); n; n = walker.nextNode()) {
    const el = n.parentElement;
    if (!n.textContent.trim() || !el || !el.getClientRects().length) continue;
    const style = getComputedStyle(el);
    if (style.visibility === "hidden" || Number(style.opacity) === 0) continue;
    const [fg, bg] = [lum(rgba(style.color)), lum(background(el))];
    const ratio = (Math.max(fg, bg) + 0.05) / (Math.min(fg, bg) + 0.05);
    const size = parseFloat(style.fontSize), bold = Number(style.fontWeight) >= 700;
    const large = size >= 24 || (bold && size >= 18.66);
    if (ratio < (large ? 3 : 4.5)) failures.push(`${n.textContent.trim().slice(0, 40)}: ${ratio.toFixed(2)}`);
  }
  return failures;
}"""


def test_text_contrast_meets_wcag_aa(app_hub: AppHub, page: Page) -> None:
    """Every visible text on the timeline, the detail dialog and the compare view."""
    ehr_launch(page, app_hub, "a")
    page.wait_for_function("() => document.querySelectorAll('.card img').length >= 3")
    assert page.evaluate(_CONTRAST) == []
    page.locator(".card button.link").first.click()
    expect(page.get_by_role("dialog")).to_be_visible()
    assert page.evaluate(_CONTRAST) == []


def test_partner_sites_items_are_marked_with_their_site(
    app_hub: AppHub, page: Page, tmp_path_factory: pytest.TempPathFactory
) -> None:
    """Issue 12's federated search behind "Include partner sites": a partner hub's study shows
    with its site's badge and a placeholder (its pixels need the partner's own token); a
    partner that is down is named in a warning."""
    from tests.integration.dicom.conftest import stop_process
    from tests.integration.dicomweb.conftest import start_web_hub

    partner = start_web_hub(tmp_path_factory.mktemp("partner") / "data", channels="dicomweb")
    try:
        system = "urn:pixelhub:patient-id"
        with partner.http() as c:
            r = c.post("/fhir/Patient", json={
                "resourceType": "Patient", "identifier": [{"system": system, "value": "TL-A"}],
                "name": [{"family": "Garcia", "given": ["Maria"]}],
            })  # fmt: skip
            subject = f"Patient/{r.json()['id']}"
            r = c.post("/fhir/ImagingStudy", json={
                "resourceType": "ImagingStudy", "status": "available",
                "identifier": [{"system": "urn:dicom:uid", "value": "urn:oid:1.2.826.0.1.99.77"}],
                "subject": {"reference": subject}, "started": "2024-02-02T09:00:00Z",
                "description": "MR breast at the partner",
                "modality": [{"system": "http://dicom.nema.org/resources/ontology/DCM", "code": "MR"}],
            })  # fmt: skip
            assert r.status_code == 201, r.text
        jwks = partner.data_dir.parent / "hub-jwks.json"
        jwks.write_text(cli(app_hub.data_dir, "partners", "jwks"))
        scopes = "system/ImagingStudy.rs system/DocumentReference.rs system/DiagnosticReport.rs system/Patient.rs system/Endpoint.rs"
        out = cli(partner.data_dir, "clients", "add", "timeline-hub", "--type", "confidential-asymmetric",
                  "--jwks", str(jwks), "--scope", scopes)  # fmt: skip
        client_id = out.split("client_id:")[1].split()[0]
        cli(app_hub.data_dir, "partners", "add", "north", "--fhir-base", f"{partner.url}/fhir",
            "--client-id", client_id, "--display", "North Hospital", "--identifier-system", system)  # fmt: skip
        dead = f"http://127.0.0.1:{free_port()}"
        cli(app_hub.data_dir, "partners", "add", "south", "--fhir-base", f"{dead}/fhir",
            "--client-id", "x", "--token-url", f"{dead}/auth/token", "--display", "South Clinic",
            "--timeout", "2")  # fmt: skip
        ehr_launch(page, app_hub, "a")
        assert "MR breast at the partner" not in titles(page)
        page.get_by_label("Include partner sites").check()
        partner_card = card(page, "MR breast at the partner")
        expect(partner_card).to_be_visible()
        expect(partner_card.locator(".badge.site")).to_have_text("North Hospital")
        expect(partner_card.get_by_role("img")).to_have_attribute(
            "aria-label", re.compile("held at North Hospital")
        )
        expect(page.get_by_role("alert")).to_contain_text("South Clinic")
        local = set(app_hub.patients["a"].titles)
        assert local <= set(titles(page))  # this hub's items stay, unmarked
        assert page.locator(".card.partner").count() == 1
        shot(page, "federated")
        page.get_by_label("Include partner sites").uncheck()
        expect(partner_card).to_have_count(0)
    finally:
        cli(app_hub.data_dir, "partners", "remove", "north")
        cli(app_hub.data_dir, "partners", "remove", "south")
        stop_process(partner.process)
        partner.log.close()


def test_demo_mode_registers_the_app_so_it_just_works(
    page: Page, tmp_path_factory: pytest.TempPathFactory
) -> None:
    """``pixelhub serve --demo`` (what ./scripts/demo runs): open /app/, sign in as the demo
    user, pick a sample patient, see the timeline."""
    workdir = tmp_path_factory.mktemp("demo")
    env = {**os.environ, "PIXELHUB_CHANNELS": "dicomweb,media"}
    log = open(workdir / "serve.log", "wb")  # noqa: SIM115 (closed below)
    process = subprocess.Popen(
        [sys.executable, "-m", "hub", "serve", "--demo", "--http-port", "0",
         "--data-dir", str(workdir / "data")],
        env=env, stdout=log, stderr=subprocess.STDOUT,
    )  # fmt: skip
    try:
        ports = workdir / "data" / "ports.json"
        deadline = time.monotonic() + 60
        while not ports.exists():
            assert process.poll() is None and time.monotonic() < deadline, "demo did not start"
            time.sleep(0.05)
        url = f"http://127.0.0.1:{json.loads(ports.read_text())['http']}"
        page.goto(f"{url}/app/")
        sign_in(page, "Maria Garcia (born 1968-04-12)", user=DEMO_USER, password=DEMO_PASSWORD)
        page.wait_for_selector(PAINTED)
        shown = titles(page)
        assert "CT chest with contrast" in shown and "Breast core biopsy whole-slide" in shown
        assert "Upper GI endoscopy" not in shown  # another sample patient's
        shot(page, "demo-timeline")
    finally:
        stop_process(process)
        log.close()
    assert "Imaging timeline app:" in (workdir / "serve.log").read_text()
