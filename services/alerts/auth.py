"""Who may use the safety desk, and as whom: users, roles, passwords, API tokens, sessions.

- Users come from a YAML file (`USERS_FILE`), validated on load; a bad file stops the service
  with the file, the entry and the reason.
- Passwords are kept as argon2id hashes (slow on purpose); API bearer tokens, long random strings,
  as sha256 hex (a fast hash is enough for 256 random bits, and a token check must be cheap).
- The web page keeps a signed session cookie (HMAC-SHA256 with `SESSION_SECRET`) that names the
  user and expires; each request looks the user up again, so a removed user or a changed password
  ends the user's sessions.
- Roles: a safety physician reads, acknowledges and resolves alerts; a viewer reads; a site user
  reads the subjects of their own site only (`can_see`).

Operators create users with

    .venv/bin/python -m services.alerts.auth hash-password   # prompts; prints the argon2 hash
    .venv/bin/python -m services.alerts.auth new-token       # prints a token and its sha256
"""

import base64
import binascii
import getpass
import hashlib
import hmac
import json
import os
import re
import secrets
import sys
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import timedelta
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any

from argon2 import PasswordHasher, extract_parameters
from argon2.exceptions import InvalidHashError, VerificationError
from fastapi import Depends, HTTPException, Request
from fastapi.security import APIKeyCookie, HTTPBearer

from services.common import entry_files

USERS_FILE_ENV = "USERS_FILE"
SESSION_SECRET_ENV = "SESSION_SECRET"
SESSION_COOKIE = "safetymon_session"
SESSION_MAX_AGE = timedelta(hours=12)
MIN_SECRET_LENGTH = 32

_PASSWORDS = PasswordHasher()  # argon2id with argon2-cffi's defaults (RFC 9106 low-memory)
_SHA256_HEX = re.compile(r"[0-9a-f]{64}")
_USER_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._@-]{0,199}")
_ENTRY_KEYS = {"user_id", "role", "site_id", "password_hash", "token_hashes"}


class Role(StrEnum):
    SAFETY_PHYSICIAN = "safety-physician"  # read, acknowledge, resolve
    VIEWER = "viewer"  # read only
    SITE_USER = "site-user"  # read only, and only the subjects of their own site


class Permission(StrEnum):
    READ = "read"
    ACKNOWLEDGE = "acknowledge"
    RESOLVE = "resolve"


ROLE_PERMISSIONS: Mapping[Role, frozenset[Permission]] = {
    Role.SAFETY_PHYSICIAN: frozenset(Permission),
    Role.VIEWER: frozenset({Permission.READ}),
    Role.SITE_USER: frozenset({Permission.READ}),
}


@dataclass(frozen=True)
class User:
    user_id: str
    role: Role
    site_id: str | None = None  # required for site users, None for every other role

    def __post_init__(self) -> None:
        object.__setattr__(self, "role", Role(self.role))
        if self.role is Role.SITE_USER and not self.site_id:
            raise ValueError(f"user {self.user_id}: a site user needs a site_id")
        if self.role is not Role.SITE_USER and self.site_id is not None:
            raise ValueError(
                f"user {self.user_id}: site_id is only for site users, not role {self.role}"
            )


def may(user: User, permission: Permission) -> bool:
    return permission in ROLE_PERMISSIONS[user.role]


def can_see(user: User, site_id: str | None) -> bool:
    """Whether `user` may see a subject (or alert) of `site_id`: site users only their own site;
    a record of no known site is not theirs."""
    if user.role is Role.SITE_USER:
        return site_id is not None and site_id == user.site_id
    return True


# -- operators' helpers -----------------------------------------------------------------------


def hash_password(password: str) -> str:
    """The argon2id hash of `password`, as the users file keeps it."""
    if not password:
        raise ValueError("refusing an empty password")
    return _PASSWORDS.hash(password)


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def new_token() -> tuple[str, str]:
    """A new API bearer token (256 random bits) and its sha256 hex, for `token_hashes`."""
    token = secrets.token_urlsafe(32)
    return token, token_hash(token)


# -- the user directory -----------------------------------------------------------------------


class UserFileError(ValueError):
    """A users file that cannot be used; the message names the file, the entry and why."""


@dataclass(frozen=True)
class _Account:
    user: User
    password_hash: str
    token_hashes: tuple[str, ...]


class UserDirectory:
    """The users of the safety desk, from a YAML file:

        users:
          - user_id: safety-physician-01
            role: safety-physician        # safety-physician | viewer | site-user
            site_id: null                 # required for site-user, absent otherwise
            password_hash: $argon2id$v=19$m=65536,t=3,p=4$...
            token_hashes: [<sha256 hex of an API token>, ...]   # optional

    `authenticate_password` runs argon2 (tens of milliseconds of CPU): call it from a thread
    (`await asyncio.to_thread(...)`) in a request handler."""

    def __init__(self, accounts: Iterable[_Account], origin: str = "<users>") -> None:
        self.origin = origin
        self._accounts = {a.user.user_id: a for a in accounts}
        self._tokens = [(h, a.user) for a in self._accounts.values() for h in a.token_hashes]
        # A missing user costs one argon2 verify too, against a hash made with the parameters
        # the directory's own hashes use, so the time taken does not tell which ids exist.
        params = [extract_parameters(a.password_hash) for a in self._accounts.values()]
        counts = Counter(map(repr, params))
        hasher = (
            PasswordHasher.from_parameters(max(params, key=lambda p: counts[repr(p)]))
            if params
            else _PASSWORDS
        )
        self._dummy_hash = hasher.hash(secrets.token_urlsafe(16))

    @classmethod
    def load(cls, path: str | Path) -> "UserDirectory":
        return cls.parse(*entry_files.read_text(path, UserFileError))

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> "UserDirectory":
        return cls.load(
            entry_files.path_from_env(environ, USERS_FILE_ENV, "the users file", UserFileError)
        )

    @classmethod
    def parse(cls, text: str, origin: str = "<users>") -> "UserDirectory":
        entries = entry_files.entries(text, origin, "users", "a list of users", UserFileError)
        accounts: list[_Account] = []
        first_entry: dict[str, int] = {}
        token_owner: dict[str, str] = {}
        for number, entry in enumerate(entries, start=1):
            where = f"{origin}: user #{number}"
            if isinstance(entry, dict) and isinstance(entry.get("user_id"), str):
                where += f" ({entry['user_id']})"
            account = _parse_entry(entry, where)
            user_id = account.user.user_id
            if user_id in first_entry:
                raise UserFileError(
                    f"{where}: duplicate user_id '{user_id}' (first given as user "
                    f"#{first_entry[user_id]})"
                )
            first_entry[user_id] = number
            for digest in account.token_hashes:
                if digest in token_owner:
                    raise UserFileError(
                        f"{where}: token hash {digest[:12]}... is also a token of "
                        f"'{token_owner[digest]}': a token must name one user"
                    )
                token_owner[digest] = user_id
            accounts.append(account)
        return cls(accounts, origin)

    def __len__(self) -> int:
        return len(self._accounts)

    def get(self, user_id: str) -> User | None:
        account = self._accounts.get(user_id)
        return account.user if account else None

    def users(self) -> list[User]:
        return [a.user for a in self._accounts.values()]

    def authenticate_password(self, user_id: str, password: str) -> User | None:
        """The user, if `password` is theirs; None for a wrong password or an unknown user,
        in about the same time (argon2 verifies in constant time; a missing user is verified
        against a dummy hash)."""
        account = self._accounts.get(user_id) if isinstance(user_id, str) else None
        stored = account.password_hash if account else self._dummy_hash
        try:
            _PASSWORDS.verify(stored, password if isinstance(password, str) else "")
        except (VerificationError, InvalidHashError):
            return None
        return account.user if account and password else None

    def authenticate_token(self, token: str) -> User | None:
        """The user whose API token this is, or None. Every stored hash is compared (with
        `hmac.compare_digest`), whichever matches, so the time does not depend on the token."""
        if not isinstance(token, str) or not token:
            return None
        digest = token_hash(token)
        found: User | None = None
        for stored, user in self._tokens:
            if hmac.compare_digest(stored, digest):
                found = user
        return found

    def _password_hash(self, user_id: str) -> str | None:
        account = self._accounts.get(user_id)
        return account.password_hash if account else None


def _parse_entry(entry: object, where: str) -> _Account:
    if not isinstance(entry, dict):
        raise UserFileError(f"{where}: expected a mapping with user_id, role, password_hash")
    unknown = sorted(str(k) for k in entry if k not in _ENTRY_KEYS)
    if unknown:
        raise UserFileError(
            f"{where}: unknown field(s) {', '.join(unknown)}; fields are "
            f"{', '.join(sorted(_ENTRY_KEYS))}"
        )
    user_id = entry.get("user_id")
    if not isinstance(user_id, str) or not _USER_ID.fullmatch(user_id):
        raise UserFileError(
            f"{where}: user_id must be 1-200 characters of letters, digits and ._@- "
            f"(got {user_id!r})"
        )
    role = entry.get("role")
    if role not in {r.value for r in Role}:
        raise UserFileError(
            f"{where}: unknown role {role!r}; roles are {', '.join(r.value for r in Role)}"
        )
    site_id = entry.get("site_id")
    if role == Role.SITE_USER:
        if not isinstance(site_id, str) or not site_id.strip():
            raise UserFileError(f"{where}: a site-user needs a site_id (e.g. GZ01)")
    elif site_id is not None:
        raise UserFileError(f"{where}: site_id is only for site-user, not role {role}")
    password_hash = entry.get("password_hash")
    if not isinstance(password_hash, str) or not password_hash.startswith("$argon2id$"):
        raise UserFileError(
            f"{where}: password_hash must be an argon2id hash ($argon2id$...); make one with "
            f"`python -m services.alerts.auth hash-password`"
        )
    try:
        extract_parameters(password_hash)
    except InvalidHashError:
        raise UserFileError(f"{where}: password_hash is not a well-formed argon2id hash") from None
    tokens = entry.get("token_hashes") or []
    if not isinstance(tokens, list):
        raise UserFileError(f"{where}: token_hashes must be a list of sha256 hex digests")
    digests: list[str] = []
    for position, digest in enumerate(tokens, start=1):
        if not isinstance(digest, str) or not _SHA256_HEX.fullmatch(digest.lower()):
            raise UserFileError(
                f"{where}: token_hashes #{position} is not a sha256 hex digest (64 hex "
                f"characters); store the hash of a token, never the token"
            )
        if digest.lower() in digests:
            raise UserFileError(f"{where}: token_hashes #{position} is listed twice")
        digests.append(digest.lower())
    return _Account(User(user_id, Role(role), site_id), password_hash, tuple(digests))


# -- sessions -----------------------------------------------------------------------------------


def _b64encode(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _b64decode(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


class Sessions:
    """Signed, expiring session cookies for the web page: `<payload>.<signature>`, where the
    payload (base64url JSON: user id, issued at, expires at, a password fingerprint) is signed
    with HMAC-SHA256 under `SESSION_SECRET`. The payload is readable by its holder (no secret in
    it) but cannot be changed. A session ends at its expiry, when the user leaves the directory,
    when the user's password changes, or for everyone when the secret is rotated."""

    _DOMAIN = b"safetymon-session-v1."

    def __init__(
        self,
        directory: UserDirectory,
        secret: str | bytes,
        *,
        max_age: timedelta = SESSION_MAX_AGE,
        clock: Callable[[], float] = time.time,
    ) -> None:
        key = secret.encode() if isinstance(secret, str) else secret
        if len(key) < MIN_SECRET_LENGTH:
            raise ValueError(
                f"{SESSION_SECRET_ENV} must be at least {MIN_SECRET_LENGTH} characters; make one "
                "with `python -c 'import secrets; print(secrets.token_urlsafe(32))'`"
            )
        if max_age <= timedelta(0):
            raise ValueError("a session's max_age must be positive")
        self.directory = directory
        self.max_age = max_age
        self._key = key
        self._clock = clock

    @classmethod
    def from_env(
        cls, directory: UserDirectory, environ: Mapping[str, str] | None = None, **kwargs: Any
    ) -> "Sessions":
        environ = os.environ if environ is None else environ
        secret = environ.get(SESSION_SECRET_ENV)
        if not secret:
            raise ValueError(f"{SESSION_SECRET_ENV} is not set: sessions need a secret")
        return cls(directory, secret, **kwargs)

    def _sign(self, payload: str) -> str:
        return _b64encode(hmac.new(self._key, self._DOMAIN + payload.encode(), "sha256").digest())

    def _fingerprint(self, password_hash: str) -> str:
        return _b64encode(hmac.new(self._key, password_hash.encode(), "sha256").digest()[:12])

    def issue_session(self, user: User) -> str:
        """A cookie value naming `user`, valid for `max_age`."""
        password_hash = self.directory._password_hash(user.user_id)
        if password_hash is None or self.directory.get(user.user_id) != user:
            raise ValueError(f"user {user.user_id} is not in the directory as given")
        now = int(self._clock())
        claims = {
            "u": user.user_id,
            "iat": now,
            "exp": now + int(self.max_age.total_seconds()),
            "pw": self._fingerprint(password_hash),
        }
        payload = _b64encode(json.dumps(claims, separators=(",", ":")).encode())
        return f"{payload}.{self._sign(payload)}"

    def read_session(self, cookie: str | None) -> User | None:
        """The user a cookie names, or None if it is missing, malformed, tampered with, expired,
        or its user is gone or has a new password."""
        if not cookie or not isinstance(cookie, str) or len(cookie) > 4096:
            return None
        payload, _, signature = cookie.partition(".")
        if not payload or not hmac.compare_digest(signature.encode(), self._sign(payload).encode()):
            return None
        try:
            claims = json.loads(_b64decode(payload))
            user_id, issued, expires, fingerprint = (
                claims["u"],
                claims["iat"],
                claims["exp"],
                claims["pw"],
            )
        except (ValueError, KeyError, TypeError, binascii.Error):
            return None
        if not (isinstance(user_id, str) and isinstance(issued, int) and isinstance(expires, int)):
            return None
        now = self._clock()
        if now >= expires or issued > now + 60 or expires - issued > self.max_age.total_seconds():
            return None
        password_hash = self.directory._password_hash(user_id)
        if password_hash is None or not hmac.compare_digest(
            str(fingerprint).encode(), self._fingerprint(password_hash).encode()
        ):
            return None
        return self.directory.get(user_id)

    def cookie_options(self) -> dict[str, Any]:
        """Arguments for `response.set_cookie(SESSION_COOKIE, value, **options)`: not readable by
        scripts, not sent cross-site (a form on another site cannot acknowledge with it), and
        HTTPS only (set `secure=False` yourself for plain-HTTP local use)."""
        return {
            "max_age": int(self.max_age.total_seconds()),
            "httponly": True,
            "samesite": "strict",
            "secure": True,
            "path": "/",
        }


# -- FastAPI dependencies ---------------------------------------------------------------------

_bearer_scheme = HTTPBearer(auto_error=False, description="API token: Authorization: Bearer ...")
_cookie_scheme = APIKeyCookie(name=SESSION_COOKIE, auto_error=False, description="web session")


def _unauthorized(detail: str, error: str | None = None) -> HTTPException:
    challenge = f'Bearer error="{error}"' if error else "Bearer"
    return HTTPException(401, detail, headers={"WWW-Authenticate": challenge})


def user_dependency(directory: UserDirectory, sessions: Sessions) -> Callable[..., Awaitable[User]]:
    """A dependency giving the signed-in `User`: from `Authorization: Bearer <token>` if that
    header is sent (a bad one is refused, never passed over for the cookie), else from the
    session cookie; 401 with `WWW-Authenticate: Bearer` otherwise. Sets
    `request.state.auth_method` to "token" or "session" (for the audit log)."""

    async def current_user(
        request: Request,
        _token: Annotated[object, Depends(_bearer_scheme)],
        _cookie: Annotated[object, Depends(_cookie_scheme)],
    ) -> User:
        authorization = request.headers.get("authorization")
        if authorization is not None:
            scheme, _, token = authorization.partition(" ")
            if scheme.lower() != "bearer" or not token.strip():
                raise _unauthorized("Authorization must be 'Bearer <token>'", "invalid_request")
            user = directory.authenticate_token(token.strip())
            if user is None:
                raise _unauthorized("invalid or revoked token", "invalid_token")
            request.state.auth_method = "token"
            return user
        cookie = request.cookies.get(SESSION_COOKIE)
        if cookie is not None:
            user = sessions.read_session(cookie)
            if user is None:
                raise _unauthorized("session expired or invalid: sign in again")
            request.state.auth_method = "session"
            return user
        raise _unauthorized("sign in, or send Authorization: Bearer <token>")

    return current_user


def require_role(
    *roles: Role,
    current_user: Callable[..., Awaitable[User]],
    action: str = "do this",
) -> Callable[..., Awaitable[User]]:
    """A dependency giving the signed-in user if their role is one of `roles`, else 403, e.g.

        physician = require_role(
            Role.SAFETY_PHYSICIAN, current_user=current_user, action="acknowledge alerts"
        )

    refuses a viewer with "role viewer may not acknowledge alerts (allowed: safety-physician)".
    `current_user` is the dependency `user_dependency` made."""
    if not roles:
        raise ValueError("require_role needs at least one role")
    allowed = frozenset(Role(r) for r in roles)

    async def user_with_role(user: Annotated[User, Depends(current_user)]) -> User:
        check_role(user, allowed, action)
        return user

    return user_with_role


def check_role(user: User, roles: Iterable[Role], action: str = "do this") -> None:
    """Raise 403 unless `user` has one of `roles` (for checks inside a handler)."""
    roles = frozenset(roles)
    if user.role not in roles:
        allowed = ", ".join(r.value for r in Role if r in roles)
        raise HTTPException(403, f"role {user.role} may not {action} (allowed: {allowed})")


# -- command line -------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if args == ["hash-password"]:
        if sys.stdin.isatty():
            password = getpass.getpass("password: ")
            if getpass.getpass("again: ") != password:
                print("the passwords differ", file=sys.stderr)
                return 1
        else:
            password = sys.stdin.readline().rstrip("\n")
        if not password:
            print("refusing an empty password", file=sys.stderr)
            return 1
        print(hash_password(password))
        return 0
    if args == ["new-token"]:
        token, digest = new_token()
        print(f"token:  {token}   (give to the user; not stored)")
        print(f"sha256: {digest}   (put under token_hashes)")
        return 0
    print("usage: python -m services.alerts.auth hash-password | new-token", file=sys.stderr)
    return 2


if __name__ == "__main__":
    raise SystemExit(main())
