import pytest

from hub.auth import AccessPolicy, Principal
from hub.errors import Forbidden, Unauthorized


def test_closed_without_tokens_or_demo() -> None:
    policy = AccessPolicy(demo=False, tokens=[])
    with pytest.raises(Unauthorized) as exc:
        policy.authenticate_bearer(None, "127.0.0.1")
    assert exc.value.headers["WWW-Authenticate"].startswith("Bearer")
    with pytest.raises(Unauthorized):
        policy.authenticate_bearer("Bearer anything", None)


def test_static_tokens() -> None:
    policy = AccessPolicy(demo=False, tokens=["s3cret"])
    assert policy.authenticate_bearer("Bearer s3cret", "10.0.0.1").address == "10.0.0.1"
    assert policy.authenticate_bearer("bearer s3cret", None).subject == "static-token"
    for header in ("Bearer s3cre", "Basic s3cret", "s3cret", "Bearer "):
        with pytest.raises(Unauthorized):
            policy.authenticate_bearer(header, None)


def test_demo_is_open() -> None:
    p = AccessPolicy(demo=True, tokens=[]).authenticate_bearer(None, None)
    assert p.kind == "anonymous-demo"


@pytest.mark.parametrize(
    ("scope", "interaction", "rtype", "allowed"),
    [
        ("user/ImagingStudy.read", "search", "ImagingStudy", True),
        ("user/ImagingStudy.read", "create", "ImagingStudy", False),
        ("user/ImagingStudy.rs", "read", "ImagingStudy", True),
        ("user/ImagingStudy.rs", "update", "ImagingStudy", False),
        ("user/*.write", "delete", "Patient", True),
        ("user/*.write", "read", "Patient", False),
        ("patient/Patient.r", "read", "ImagingStudy", False),
    ],
)
def test_scope_check(scope: str, interaction: str, rtype: str, allowed: bool) -> None:
    policy = AccessPolicy(demo=False, tokens=[])
    principal = Principal("u", scopes=frozenset({scope}))
    if allowed:
        policy.check(principal, interaction, rtype)  # type: ignore[arg-type]
    else:
        with pytest.raises(Forbidden):
            policy.check(principal, interaction, rtype)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("scope", "interaction", "rtype", "allowed"),
    [
        ("system/ImagingStudy.rs", "search", "ImagingStudy", True),
        ("system/ImagingStudy.rs", "vread", "ImagingStudy", True),
        ("system/ImagingStudy.rs", "create", "ImagingStudy", False),
        ("system/*.read", "history", "Patient", True),
        ("system/*.c", "create", "Patient", True),
        ("system/*.c", "update", "Patient", False),
        ("system/Patient.sr", "read", "Patient", False),  # invalid v2 order grants nothing
        # patient/ scopes grant nothing without a patient launch context (fail closed)
        ("patient/ImagingStudy.rs", "search", "ImagingStudy", False),
        ("patient/*.*", "read", "Patient", False),
        # query-restricted scopes grant a restricted access (tests/smart/test_query_scopes.py)
        ("system/DocumentReference.rs?category=x", "search", "DocumentReference", True),
        ("system/DocumentReference.rs?category=x", "create", "DocumentReference", False),
        ("openid", "read", "Patient", False),
    ],
)
def test_smart_scope_check(scope: str, interaction: str, rtype: str, allowed: bool) -> None:
    policy = AccessPolicy(demo=False, tokens=[])
    principal = Principal("c", scopes=frozenset({scope}))
    if allowed:
        policy.check(principal, interaction, rtype)  # type: ignore[arg-type]
    else:
        with pytest.raises(Forbidden):
            policy.check(principal, interaction, rtype)  # type: ignore[arg-type]


def test_verified_tokens_become_principals() -> None:
    def verify(token: str) -> dict[str, object]:
        if token != "good.jwt.token":
            raise ValueError("bad signature")
        return {"sub": "client-1", "client_id": "client-1", "scope": "system/Patient.rs openid"}

    policy = AccessPolicy(demo=False, tokens=["static"], verify_token=verify)
    p = policy.authenticate_bearer("Bearer good.jwt.token", "10.1.1.1")
    assert (p.subject, p.scopes, p.address) == (
        "client-1",
        frozenset({"system/Patient.rs", "openid"}),
        "10.1.1.1",
    )
    with pytest.raises(Unauthorized) as exc:
        policy.authenticate_bearer("Bearer bad.jwt.token", None)
    assert 'error="invalid_token"' in exc.value.headers["WWW-Authenticate"]
    assert policy.authenticate_bearer("Bearer static", None).scopes == frozenset({"*"})
