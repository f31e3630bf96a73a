"""Keyed pseudonyms: the same input and key give the same pseudonym in every run, anywhere.

An HMAC-SHA256 of the original value under a secret key, so pseudonyms cannot be reversed or
recomputed by anyone without the key, yet a patient seen in two batches gets the same
pseudonymous ID, the same date shift and the same new UIDs.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import secrets
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import platformdirs

from sendit_api.errors import Permanent
from sendit_api.names import PSEUDONYM_KEY_ENV

MAX_JITTER_DAYS = 365


@dataclass(frozen=True)
class Pseudonymizer:
    key: bytes

    def _digest(self, kind: str, value: str) -> bytes:
        # (surrogateescape: a file name that is not valid UTF-8 still gets its reference)
        data = f"{kind}\0{value}".encode("utf-8", "surrogateescape")
        return hmac.new(self.key, data, hashlib.sha256).digest()

    def token(self, kind: str, value: str, length: int = 12) -> str:
        """An uppercase base32 token: short, case-insensitive-safe, fits SH and LO."""
        return base64.b32encode(self._digest(kind, value)).decode()[:length]

    def patient(self, patient_key: str) -> str:
        return "P" + self.token("patient", patient_key)

    def study(self, item_key: str) -> str:
        return "S" + self.token("study", item_key)

    def jitter_days(self, patient_key: str) -> int:
        """A shift in [-MAX_JITTER_DAYS, -1]: dates move into the past, never to today."""
        n = int.from_bytes(self._digest("jitter", patient_key)[:8], "big")
        return -(n % MAX_JITTER_DAYS + 1)

    def uid(self, uid: str) -> str:
        """A UUID-derived UID (PS3.5 B.2): 2.25 followed by a 128-bit integer."""
        return "2.25." + str(int.from_bytes(self._digest("uid", uid)[:16], "big"))


def load_key(
    key_file: Path | None, *, default: Literal["none", "read", "create"] = "none"
) -> tuple[bytes, str | None]:
    """The key from a file, the environment, or a laptop's default key in the config dir:
    `default` says whether that one is read (`sendit locate`), made once when missing
    (`sendit run`), or not looked for (a pod: its key comes from a Secret).

    Returns the key and, when a new one was created, a message saying where.
    """
    if key_file is not None:
        try:
            key = key_file.read_bytes().strip()
        except OSError as exc:
            raise Permanent(f"cannot read the pseudonym key file: {exc.strerror}") from exc
        return _checked(key, "the key file"), None
    if os.environ.get(PSEUDONYM_KEY_ENV):
        return _checked(os.environ[PSEUDONYM_KEY_ENV].encode().strip(), PSEUDONYM_KEY_ENV), None
    path = Path(platformdirs.user_config_dir("sendit")) / "pseudonym.key"
    if default != "none" and path.exists():
        return _checked(path.read_bytes().strip(), str(path)), None
    if default != "create":
        where = f" (there is none at {path} either)" if default == "read" else ""
        raise Permanent(f"no pseudonym key: give --key-file or set {PSEUDONYM_KEY_ENV}{where}")
    key = secrets.token_hex(32).encode()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(key)
    except OSError as exc:
        raise Permanent(
            f"no pseudonym key, and none can be created at {path} ({exc.strerror}):"
            f" give --key-file or set {PSEUDONYM_KEY_ENV}"
        ) from None
    return key, f"created a new pseudonym key at {path} (keep it: it makes pseudonyms stable)"


def _checked(key: bytes, where: str) -> bytes:
    if len(key) < 16:
        raise Permanent(f"the pseudonym key from {where} is shorter than 16 bytes")
    return key
