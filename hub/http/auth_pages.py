"""Server-rendered pages of the authorization endpoint: sign-in, patient picker, consent, error.

Plain HTML with labelled fields, one ``<main>`` landmark and a heading per page, no script. Every
form carries the request id and a CSRF token; values are escaped with ``html.escape``.
"""

from __future__ import annotations

from html import escape

from hub.smart.authorize import PendingAuthorization
from hub.smart.scopes import parse_scope

_STYLE = (
    "body{font-family:system-ui,sans-serif;max-width:32rem;margin:2rem auto;padding:0 1rem}"
    "label{display:block;margin-top:1rem}input[type=text],input[type=password]{width:100%}"
    "button{margin-top:1rem;margin-right:.5rem}.error{color:#a00}"
)
_VERBS = {"c": "create", "r": "read", "u": "update", "d": "delete", "s": "search"}
_LAUNCH = {
    "openid": "Know who you are",
    "fhirUser": "Know who you are in the record (your FHIR user)",
    "launch": "Know what your EHR opened it for (patient, encounter, study)",
    "launch/patient": "Work with the patient you choose",
    "offline_access": "Keep access when you are not using it (until you revoke it)",
    "online_access": "Keep access while you stay signed in to PixelHub",
}


def _page(title: str, body: str) -> str:
    return (
        f'<!doctype html><html lang="en"><head><meta charset="utf-8">'
        f'<meta name="viewport" content="width=device-width,initial-scale=1">'
        f"<title>{escape(title)} - PixelHub</title><style>{_STYLE}</style></head>"
        f"<body><main><h1>{escape(title)}</h1>{body}</main></body></html>"
    )


def _hidden(pending: PendingAuthorization) -> str:
    return (
        f'<input type="hidden" name="request" value="{escape(pending.id)}">'
        f'<input type="hidden" name="csrf" value="{escape(pending.csrf)}">'
    )


def _error(message: str | None) -> str:
    return f'<p class="error" role="alert">{escape(message)}</p>' if message else ""


def login_page(pending: PendingAuthorization, message: str | None = None) -> str:
    return _page(
        "Sign in",
        f"<p>{escape(pending.client.name)} asks to access PixelHub.</p>{_error(message)}"
        f'<form method="post" action="login">{_hidden(pending)}'
        '<label for="username">User name</label>'
        '<input type="text" id="username" name="username" autocomplete="username" required>'
        '<label for="password">Password</label>'
        '<input type="password" id="password" name="password" autocomplete="current-password"'
        " required>"
        '<button type="submit">Sign in</button></form>',
    )


def patient_page(
    pending: PendingAuthorization, patients: list[tuple[str, str]], message: str | None = None
) -> str:
    options = "".join(
        f'<div><input type="radio" name="patient" id="p-{i}" value="{escape(pid)}" required>'
        f'<label for="p-{i}" style="display:inline">{escape(display)}</label></div>'
        for i, (pid, display) in enumerate(patients)
    )
    return _page(
        "Choose a patient",
        f"{_error(message)}"
        f'<form method="post" action="patient">{_hidden(pending)}'
        f"<fieldset><legend>Patients</legend>{options or '<p>No patients.</p>'}</fieldset>"
        '<button type="submit">Continue</button></form>',
    )


def _describe(scope: str) -> str:
    parsed = parse_scope(scope)
    if parsed is None:
        return _LAUNCH.get(scope, scope)
    verbs = ", ".join(_VERBS[p] for p in "cruds" if p in parsed.permissions)
    what = "all resources" if parsed.resource_type == "*" else parsed.resource_type
    whose = "of the chosen patient" if parsed.context == "patient" else "you may access"
    return f"{verbs}: {what} {whose}"


def consent_page(pending: PendingAuthorization, patient_display: str | None) -> str:
    items = "".join(
        f"<li>{escape(_describe(s))} <code>{escape(s)}</code></li>" for s in pending.scopes
    )
    patient = f"<p>Patient: {escape(patient_display)}</p>" if patient_display else ""
    return _page(
        "Allow access?",
        f"<p>{escape(pending.client.name)} asks to:</p><ul>{items}</ul>{patient}"
        f'<form method="post" action="consent">{_hidden(pending)}'
        '<button type="submit" name="decision" value="approve">Allow</button>'
        '<button type="submit" name="decision" value="deny">Deny</button></form>',
    )


def logout_page(signed_in: bool) -> str:
    """Sign-out (ends the session that ``online_access`` refresh tokens are bound to)."""
    if not signed_in:
        return _page("Signed out", "<p>You are not signed in to PixelHub in this browser.</p>")
    return _page(
        "Sign out",
        "<p>Apps that stay connected only while you are signed in will lose access.</p>"
        '<form method="post" action="logout"><button type="submit">Sign out</button></form>',
    )


def signed_out_page() -> str:
    return _page("Signed out", "<p>You are signed out of PixelHub.</p>")


def error_page(message: str) -> str:
    return _page("Cannot continue", f'<p class="error" role="alert">{escape(message)}</p>')
