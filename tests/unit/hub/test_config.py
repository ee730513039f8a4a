from pathlib import Path

import pytest
from pydantic import ValidationError

from hub.config import load_settings


def test_defaults_follow_design_contract(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.chdir(tmp_path)
    s = load_settings()
    assert (s.http_host, s.http_port, s.dicom_port, s.dicom_aet, s.mllp_port) == (
        "127.0.0.1",
        8080,
        11112,
        "PIXELHUB",
        2575,
    )
    assert s.data_dir == Path("pixelhub-data")
    assert s.database == "sqlite:///pixelhub-data/pixelhub.db"
    assert not s.demo and s.auth_tokens == []
    assert s.dicom_max_pdu == 1024 * 1024  # bounded: a peer cannot make us buffer a huge PDU


def test_precedence_flags_env_toml(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "pixelhub.toml").write_text(
        'http_port = 7000\ndicom_aet = "FROMTOML"\nmllp_port = 2000\n'
    )
    monkeypatch.setenv("PIXELHUB_HTTP_PORT", "9000")
    monkeypatch.setenv("PIXELHUB_AUTH_TOKENS", "a, b")
    s = load_settings(http_port=None, mllp_port=3000)
    assert s.http_port == 9000  # env beats toml
    assert s.dicom_aet == "FROMTOML"  # toml beats default
    assert s.mllp_port == 3000  # flag beats everything
    assert s.auth_tokens == ["a", "b"]


def test_explicit_config_file(tmp_path: Path) -> None:
    cfg = tmp_path / "custom.toml"
    cfg.write_text("http_port = 0\n")
    assert load_settings(str(cfg)).http_port == 0
    with pytest.raises(FileNotFoundError):
        load_settings(str(tmp_path / "missing.toml"))


@pytest.mark.parametrize(
    "bad",
    [{"http_port": 70000}, {"dicom_aet": "X" * 17}, {"dicom_aet": "A\\B"}, {"unknown_setting": 1}],
)
def test_invalid_settings_refused(bad: dict[str, object]) -> None:
    with pytest.raises(ValidationError):
        load_settings(**bad)
