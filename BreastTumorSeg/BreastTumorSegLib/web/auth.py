"""Readers' access tokens (stored hashed) and the browser sessions of a running station.

``STUDY/access.json`` holds one scrypt hash per reader, never the token itself; ``breasttumorseg
study tokens STUDY`` makes new tokens, prints them once and replaces the hashes. A browser that logs in
gets a random session id in an HttpOnly, SameSite=Strict cookie; logging out revokes the id for
good, so a replayed cookie is refused (and logged).
"""
from __future__ import annotations

import hashlib
import hmac
import json
import secrets
import time
from dataclasses import dataclass, field
from pathlib import Path

from ..core.errors import InputError
from ..io.atomic import write_json

ACCESS_FILE = "access.json"
# scrypt cost: about 30 ms and 16 MiB per check on one core, plenty against guessing a 128-bit token.
SCRYPT = {"n": 2 ** 14, "r": 8, "p": 1}


def _hash(token: str, salt: bytes, n: int, r: int, p: int) -> bytes:
    return hashlib.scrypt(token.encode("utf-8"), salt=salt, n=n, r=r, p=p, maxmem=64 << 20, dklen=32)


def hash_token(token: str) -> dict:
    salt = secrets.token_bytes(16)
    return {"scheme": "scrypt", **SCRYPT, "salt": salt.hex(), "hash": _hash(token, salt, **SCRYPT).hex()}


def issue_tokens(study_folder: str | Path, readers: list[str]) -> dict[str, str]:
    """New random tokens for *readers* (others keep theirs); only the hashes are stored."""
    path = Path(study_folder) / ACCESS_FILE
    records = read_access(study_folder) if path.exists() else {}
    tokens = {r: secrets.token_urlsafe(16) for r in readers}
    for r, tok in tokens.items():
        records[r] = hash_token(tok)
    write_json(path, {"format": "breasttumorseg-access", "readers": records}, durable=True)
    return tokens


def read_access(study_folder: str | Path) -> dict[str, dict]:
    path = Path(study_folder) / ACCESS_FILE
    if not path.exists():
        raise InputError("the study has no reader tokens yet", path,
                         "run `breasttumorseg study tokens STUDY` once and hand each reader hers")
    try:
        data = json.loads(path.read_text("utf-8"))
        readers = data["readers"]
        assert isinstance(readers, dict)
        for rec in readers.values():
            bytes.fromhex(rec["salt"]), bytes.fromhex(rec["hash"]), int(rec["n"])
    except Exception:
        raise InputError("the token file is not valid (edited by hand?)", path,
                         "issue new tokens with `breasttumorseg study tokens STUDY`") from None
    return readers


def check_token(records: dict[str, dict], reader: str, token: str) -> bool:
    """Constant-time check of *token* for *reader* (an unknown reader costs the same)."""
    rec = records.get(reader)
    salt = bytes.fromhex(rec["salt"]) if rec else b"\0" * 16
    want = bytes.fromhex(rec["hash"]) if rec else b"\0" * 32
    params = {k: int(rec[k]) for k in ("n", "r", "p")} if rec else SCRYPT
    got = _hash(token or "", salt, **params)
    return bool(rec) and hmac.compare_digest(got, want)


@dataclass
class Sessions:
    """Session id -> reader, in memory; revoked ids are remembered so a replay is recognised."""

    max_age_s: float = 12 * 3600.0
    _live: dict[str, tuple[str, float]] = field(default_factory=dict)
    _revoked: dict[str, str] = field(default_factory=dict)

    def create(self, reader: str) -> str:
        sid = secrets.token_urlsafe(32)
        self._live[sid] = (reader, time.time())
        return sid

    def reader(self, sid: str | None) -> str | None:
        hit = self._live.get(sid or "")
        if hit is None:
            return None
        if time.time() - hit[1] > self.max_age_s:
            self.revoke(sid)
            return None
        return hit[0]

    def revoked_reader(self, sid: str | None) -> str | None:
        """The reader a revoked id belonged to (a replay after logout), else None."""
        return self._revoked.get(sid or "")

    def revoke(self, sid: str) -> str | None:
        hit = self._live.pop(sid, None)
        if hit is not None:
            self._revoked[sid] = hit[0]
        return hit[0] if hit else None

    def revoke_reader(self, reader: str) -> None:
        for sid in [s for s, (r, _) in self._live.items() if r == reader]:
            self.revoke(sid)
