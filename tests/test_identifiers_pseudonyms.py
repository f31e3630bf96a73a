"""The pseudonym key and what it derives."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from sendit_api.errors import Permanent
from sendit_api.names import PSEUDONYM_KEY_ENV as KEY_ENV
from sendit_worker.identifiers.pseudonyms import Pseudonymizer, load_key


def test_uids_are_valid_and_stable() -> None:
    p = Pseudonymizer(b"k" * 32)
    uid = p.uid("1.2.3.4")
    assert uid == p.uid("1.2.3.4") != p.uid("1.2.3.5")
    assert uid.startswith("2.25.") and len(uid) <= 64
    assert all(
        part.isdigit() and (part == "0" or not part.startswith("0")) for part in uid.split(".")
    )


def test_pseudonyms_fit_their_value_representations() -> None:
    p = Pseudonymizer(b"k" * 32)
    assert len(p.patient("MRN1")) <= 16 and len(p.study("ACC1")) <= 16


def test_key_file_wins_over_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(KEY_ENV, "e" * 32)
    (tmp_path / "key").write_text("f" * 32 + "\n")
    assert load_key(tmp_path / "key", default="none") == (b"f" * 32, None)
    assert load_key(None, default="none") == (b"e" * 32, None)


def test_short_or_missing_key_is_a_configuration_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(KEY_ENV, raising=False)
    (tmp_path / "key").write_text("short")
    with pytest.raises(Permanent, match="shorter"):
        load_key(tmp_path / "key", default="none")
    with pytest.raises(Permanent, match="no pseudonym key"):
        load_key(None, default="none")


def test_local_mode_creates_one_private_key_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(KEY_ENV, raising=False)
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path))
    key, message = load_key(None, default="create")
    path = tmp_path / "sendit" / "pseudonym.key"
    assert message and str(path) in message
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert load_key(None, default="create") == (key, None)
    assert load_key(None, default="read") == (key, None)  # `sendit locate` finds it
    with pytest.raises(Permanent, match="no pseudonym key"):
        load_key(None)  # a pod's key is its Secret's, never a file in the image
