"""Operator accounts (argon2id hashes in a file), their login sessions and the failed-login lock-out."""

from __future__ import annotations

import functools
import hashlib
import hmac
import json
import os
import re
import secrets
import tempfile
from dataclasses import dataclass
from pathlib import Path

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from bot.state.expiring import ExpiringValues

_USERNAME = re.compile(r"[a-z0-9][a-z0-9_.-]{1,31}")
_HASHER = PasswordHasher()  # argon2id with the library's current recommended cost


@functools.cache
def _dummy_hash() -> str:
    """An unknown user is checked against this, so both take as long (made once, when first needed)."""
    return _HASHER.hash("an unknown user is checked against this")


@dataclass(frozen=True)
class Operator:
    username: str
    display_name: str

    def to_json(self) -> dict[str, str]:
        return {"username": self.username, "display_name": self.display_name}


class OperatorAccounts:
    """Accounts in a JSON file: {username: {display_name, password_hash}}, written atomically."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._cached: tuple[float, dict[str, dict[str, str]]] | None = None  # (mtime, accounts)

    def add(self, username: str, password: str, display_name: str = "") -> Operator:
        username = username.strip().lower()
        if not _USERNAME.fullmatch(username):
            raise ValueError("a username is 2-32 characters of a-z, 0-9, '.', '_' and '-', starting with a letter "
                             "or digit")
        if len(password) < 10:
            raise ValueError("a password needs at least 10 characters")
        accounts = self._read()
        operator = Operator(username, display_name.strip() or username)
        accounts[username] = {"display_name": operator.display_name, "password_hash": _HASHER.hash(password)}
        self._write(accounts)
        return operator

    def remove(self, username: str) -> bool:
        accounts = self._read()
        if accounts.pop(username.strip().lower(), None) is None:
            return False
        self._write(accounts)
        return True

    def list(self) -> list[Operator]:
        return [Operator(name, str(a["display_name"])) for name, a in sorted(self._read().items())]

    def verify(self, username: str, password: str) -> Operator | None:
        """The operator when the password is right; None otherwise (an unknown name costs the same time)."""
        account = self._read().get(username.strip().lower())
        try:
            _HASHER.verify(account["password_hash"] if account else _dummy_hash(), password)
        except (VerificationError, InvalidHashError):
            return None
        if account is None:
            return None
        return Operator(username.strip().lower(), str(account["display_name"]))

    def find(self, username: str) -> Operator | None:
        account = self._read().get(username)
        return Operator(username, str(account["display_name"])) if account else None

    def _read(self) -> dict[str, dict[str, str]]:
        """The accounts, parsed again only when the file changed (every console request asks)."""
        try:
            mtime = self.path.stat().st_mtime_ns
        except FileNotFoundError:
            return {}
        if self._cached is None or self._cached[0] != mtime:
            data = json.loads(self.path.read_text(encoding="utf-8"))
            if not isinstance(data, dict):
                raise ValueError(f"{self.path}: not an operator accounts file")
            self._cached = (mtime, data)
        return dict(self._cached[1])

    def _write(self, accounts: dict[str, dict[str, str]]) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=self.path.parent, prefix=".operators-")
        with os.fdopen(fd, "w", encoding="utf-8") as out:
            json.dump(accounts, out, indent=2)
        os.chmod(tmp, 0o600)  # hashes only, but nobody else needs to read them
        os.replace(tmp, self.path)


@dataclass(frozen=True)
class Session:
    username: str
    csrf: str


class OperatorSessions:
    """Login sessions: a random token in an HttpOnly cookie, stored hashed, with its CSRF token."""

    def __init__(self, values: ExpiringValues, ttl_s: int) -> None:
        self._values = values
        self._ttl_s = ttl_s

    async def open(self, username: str) -> tuple[str, Session]:
        token = secrets.token_urlsafe(32)
        session = Session(username, secrets.token_urlsafe(24))
        await self._values.set(self._key(token), json.dumps(session.__dict__), self._ttl_s)
        return token, session

    async def find(self, token: str | None) -> Session | None:
        if not token or len(token) > 200:
            return None
        raw = await self._values.get(self._key(token))
        return Session(**json.loads(raw)) if raw else None

    async def close(self, token: str | None) -> None:
        if token:
            await self._values.delete(self._key(token))

    @staticmethod
    def csrf_ok(session: Session, given: str | None) -> bool:
        return bool(given) and hmac.compare_digest(session.csrf.encode(), (given or "").encode())

    @staticmethod
    def _key(token: str) -> str:
        return "console-session:" + hashlib.sha256(token.encode()).hexdigest()


class LoginGuard:
    """`max_failures` failed logins for one name within `window_s` lock it for `lock_s` (known or not)."""

    def __init__(self, values: ExpiringValues, max_failures: int = 5, window_s: int = 300, lock_s: int = 900) -> None:
        self._values = values
        self.max_failures = max_failures
        self.window_s = window_s
        self.lock_s = lock_s

    async def locked(self, username: str) -> bool:
        return await self._values.get(self._key("lock", username)) is not None

    async def failed(self, username: str) -> None:
        if await self._values.incr(self._key("fail", username), self.window_s) >= self.max_failures:
            await self._values.set(self._key("lock", username), "1", self.lock_s)
            await self._values.delete(self._key("fail", username))

    async def succeeded(self, username: str) -> None:
        await self._values.delete(self._key("fail", username))

    @staticmethod
    def _key(kind: str, username: str) -> str:
        return f"console-login-{kind}:" + hashlib.sha256(username.strip().lower().encode()).hexdigest()[:32]
