"""hub.private_file: a private JSON file, re-read when it changes, replaced atomically."""

from __future__ import annotations

import os
import stat
from pathlib import Path
from typing import Any

from hub.private_file import PrivateJsonFile


def names(raw: Any) -> list[str]:
    return [str(n) for n in raw["names"]]


def test_private_re_read_on_change_and_empty_without_a_file(tmp_path: Path) -> None:
    path = tmp_path / "store" / "names.json"
    reader: PrivateJsonFile[list[str]] = PrivateJsonFile(path, names, [])
    writer: PrivateJsonFile[list[str]] = PrivateJsonFile(path, names, [])
    assert reader.value() == []
    writer.write({"names": ["a"]})
    assert reader.value() == ["a"]
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert stat.S_IMODE(os.stat(path.parent).st_mode) == 0o700
    writer.write({"names": ["a", "bb"]})  # another size: seen at once
    assert reader.value() == ["a", "bb"]
    assert not path.with_suffix(".tmp").exists()  # renamed over, nothing left behind
