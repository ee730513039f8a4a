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
