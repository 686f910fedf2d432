"""Access to the safety desk: the users file, passwords, tokens, sessions, roles, sites."""

import hashlib
import io
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path
from typing import Annotated

import httpx
import pytest
from argon2 import PasswordHasher, Type, extract_parameters
from fastapi import Depends, FastAPI, HTTPException, Request

from services.alerts import auth
from services.alerts.auth import (
    SESSION_COOKIE,
    Permission,
    Role,
    Sessions,
    User,
    UserDirectory,
    UserFileError,
    can_see,
    check_role,
    hash_password,
    may,
    new_token,
    require_role,
    token_hash,
    user_dependency,
)

ROOT = Path(__file__).resolve().parents[2]
SECRET = "s" * 40
# Cheap argon2 parameters keep the tests fast; verification reads the parameters from the hash.
FAST = PasswordHasher(time_cost=1, memory_cost=8, parallelism=1)
ARGON2I = PasswordHasher(time_cost=1, memory_cost=8, parallelism=1, type=Type.I)
PHYSICIAN_TOKEN = "physician-token-" + "a" * 40
VIEWER_TOKEN = "viewer-token-" + "b" * 40


def users_yaml(
    physician_password: str = "ph-pass", viewer_password: str = "vw-pass", extra: str = ""
) -> str:
    return f"""
users:
  - user_id: physician-01
    role: safety-physician
    password_hash: "{FAST.hash(physician_password)}"
    token_hashes: [{token_hash(PHYSICIAN_TOKEN)}]
  - user_id: viewer-01
    role: viewer
    site_id: null
    password_hash: "{FAST.hash(viewer_password)}"
    token_hashes: [{token_hash(VIEWER_TOKEN)}]
  - user_id: site-gz01
    role: site-user
    site_id: GZ01
    password_hash: "{FAST.hash("site-pass")}"
{extra}"""


@pytest.fixture(scope="module")
def directory() -> UserDirectory:
    return UserDirectory.parse(users_yaml(), "users.yaml")


class Clock:
    def __init__(self, now: float = 1_800_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


# -- loading ------------------------------------------------------------------------------------


def test_the_file_loads_with_roles_and_sites(tmp_path: Path) -> None:
    path = tmp_path / "users.yaml"
    path.write_text(users_yaml())
    directory = UserDirectory.load(path)
    assert len(directory) == 3
    assert directory.get("physician-01") == User("physician-01", Role.SAFETY_PHYSICIAN)
    assert directory.get("viewer-01") == User("viewer-01", Role.VIEWER, None)
    assert directory.get("site-gz01") == User("site-gz01", Role.SITE_USER, "GZ01")
    assert directory.get("nobody") is None
    assert directory.origin == str(path)


def test_from_env_reads_users_file(tmp_path: Path) -> None:
    path = tmp_path / "users.yaml"
    path.write_text(users_yaml())
    assert len(UserDirectory.from_env({"USERS_FILE": str(path)})) == 3
    with pytest.raises(UserFileError, match="USERS_FILE is not set"):
        UserDirectory.from_env({})


def test_the_example_file_is_valid_and_its_documented_credentials_work() -> None:
    directory = UserDirectory.load(ROOT / "deploy" / "users.example.yaml")
    assert {(u.user_id, u.role, u.site_id) for u in directory.users()} == {
        ("safety-physician-01", Role.SAFETY_PHYSICIAN, None),
        ("safety-physician-02", Role.SAFETY_PHYSICIAN, None),
        ("viewer-01", Role.VIEWER, None),
        ("site-user-gz01", Role.SITE_USER, "GZ01"),
    }
    for user_id, password in [
        ("safety-physician-01", "local-physician-pass"),
        ("safety-physician-02", "local-physician-02-pass"),
        ("viewer-01", "local-viewer-pass"),
        ("site-user-gz01", "local-site-gz01-pass"),
    ]:
        assert directory.authenticate_password(user_id, password) == directory.get(user_id)
        token = f"local-only-token-{user_id}-not-for-production"
        assert directory.authenticate_token(token) == directory.get(user_id)


ENTRY = '  - user_id: {uid}\n    role: {role}\n    password_hash: "{hash}"\n'


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (
            ENTRY.format(uid="admin-01", role="admin", hash="$argon2id$x"),
            r"users.yaml: user #4 \(admin-01\): unknown role 'admin'; roles are "
            "safety-physician, viewer, site-user",
        ),
        (
            ENTRY.format(uid="site-sh02", role="site-user", hash=FAST.hash("x")),
            r"user #4 \(site-sh02\): a site-user needs a site_id",
        ),
        (
            ENTRY.format(uid="viewer-02", role="viewer", hash=FAST.hash("x"))
            + "    site_id: GZ01\n",
            r"user #4 \(viewer-02\): site_id is only for site-user, not role viewer",
        ),
        (
            ENTRY.format(uid="viewer-01", role="viewer", hash=FAST.hash("x")),
            r"user #4 \(viewer-01\): duplicate user_id 'viewer-01' \(first given as user #2\)",
        ),
        (
            ENTRY.format(uid="viewer-02", role="viewer", hash="hunter2"),
            r"user #4 \(viewer-02\): password_hash must be an argon2id hash",
        ),
        (
            ENTRY.format(uid="viewer-02", role="viewer", hash="$argon2id$v=19$garbage"),
            r"user #4 \(viewer-02\): password_hash is not a well-formed argon2id hash",
        ),
        (
            ENTRY.format(
                uid="viewer-02",
                role="viewer",
                hash=PasswordHasher(time_cost=1, memory_cost=8, parallelism=1, type=Type.I).hash(
                    "x"
                ),
            ),
            r"user #4 \(viewer-02\): password_hash must be an argon2id hash",
        ),
        (
            ENTRY.format(uid="viewer-02", role="viewer", hash=FAST.hash("x"))
            + f"    token_hashes: [{VIEWER_TOKEN}]\n",
            r"user #4 \(viewer-02\): token_hashes #1 is not a sha256 hex digest",
        ),
        (
            ENTRY.format(uid="viewer-02", role="viewer", hash=FAST.hash("x"))
            + f"    token_hashes: [{token_hash(VIEWER_TOKEN)}]\n",
            r"user #4 \(viewer-02\): token hash [0-9a-f]{12}\.\.\. is also a token of "
            "'viewer-01'",
        ),
        (
            ENTRY.format(uid="viewer-02", role="viewer", hash=FAST.hash("x"))
            + f"    token_hashes: ['{'0' * 64}', '{'0' * 64}']\n",
            r"user #4 \(viewer-02\): token_hashes #2 is listed twice",
        ),
        (
            ENTRY.format(uid="viewer-02", role="viewer", hash=FAST.hash("x"))
            + "    pasword: hunter2\n",
            r"user #4 \(viewer-02\): unknown field\(s\) pasword",
        ),
        (
            ENTRY.format(uid="has space", role="viewer", hash=FAST.hash("x")),
            r"user #4 \(has space\): user_id must be",
        ),
        ("  - just-a-string\n", r"users.yaml: user #4: expected a mapping"),
    ],
)
def test_a_bad_entry_is_refused_naming_file_and_entry(extra: str, message: str) -> None:
    with pytest.raises(UserFileError, match=message):
        UserDirectory.parse(users_yaml(extra=extra), "users.yaml")


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("users: [\n", "users.yaml: not valid YAML"),
        ("", "users.yaml: expected one top-level key 'users'"),
        ("people: []\n", "users.yaml: expected one top-level key 'users'"),
        ("users: []\n", "users.yaml: 'users' must be a non-empty list"),
        ("users: {a: 1}\n", "users.yaml: 'users' must be a non-empty list"),
    ],
)
def test_a_bad_file_is_refused_naming_it(text: str, message: str) -> None:
    with pytest.raises(UserFileError, match=message):
        UserDirectory.parse(text, "users.yaml")


def test_a_missing_file_is_refused_naming_it(tmp_path: Path) -> None:
    with pytest.raises(UserFileError, match=f"{tmp_path}/absent.yaml: No such file"):
        UserDirectory.load(tmp_path / "absent.yaml")


def test_token_hashes_are_read_in_either_case() -> None:
    extra = (
        ENTRY.format(uid="viewer-02", role="viewer", hash=FAST.hash("x"))
        + f"    token_hashes: [{token_hash('upper-' + 'c' * 40).upper()}]\n"
    )
    directory = UserDirectory.parse(users_yaml(extra=extra), "users.yaml")
    assert directory.authenticate_token("upper-" + "c" * 40) == directory.get("viewer-02")


def test_a_user_is_valid_by_construction() -> None:
    with pytest.raises(ValueError, match="a site user needs a site_id"):
        User("site-x", Role.SITE_USER)
    with pytest.raises(ValueError, match="site_id is only for site users"):
        User("viewer-x", Role.VIEWER, "GZ01")
    assert User("viewer-x", "viewer").role is Role.VIEWER  # type: ignore[arg-type]


# -- passwords and tokens -----------------------------------------------------------------------


def test_the_right_password_gives_the_user(directory: UserDirectory) -> None:
    assert directory.authenticate_password("physician-01", "ph-pass") == User(
        "physician-01", Role.SAFETY_PHYSICIAN
    )
    assert directory.authenticate_password("site-gz01", "site-pass") == User(
        "site-gz01", Role.SITE_USER, "GZ01"
    )


@pytest.mark.parametrize(
    ("user_id", "password"),
    [
        ("physician-01", "vw-pass"),  # another user's password
        ("physician-01", "PH-PASS"),
        ("physician-01", ""),
        ("nobody", "ph-pass"),
        ("", "ph-pass"),
    ],
)
def test_a_wrong_password_or_unknown_user_gives_nothing(
    directory: UserDirectory, user_id: str, password: str
) -> None:
    assert directory.authenticate_password(user_id, password) is None


def test_an_unknown_user_costs_an_argon2_verify_like_a_known_one(
    directory: UserDirectory, monkeypatch: pytest.MonkeyPatch
) -> None:
    verified: list[str] = []

    class Spy:
        def verify(self, stored: str, password: str) -> bool:
            verified.append(stored)
            return FAST.verify(stored, password)

    monkeypatch.setattr(auth, "_PASSWORDS", Spy())
    assert directory.authenticate_password("nobody", "ph-pass") is None
    assert directory.authenticate_password("physician-01", "wrong") is None
    assert len(verified) == 2
    # The dummy hash has the directory's own argon2 parameters, so it takes as long.
    assert extract_parameters(verified[0]) == extract_parameters(verified[1])


def test_the_right_token_gives_its_user(directory: UserDirectory) -> None:
    assert directory.authenticate_token(PHYSICIAN_TOKEN) == directory.get("physician-01")
    assert directory.authenticate_token(VIEWER_TOKEN) == directory.get("viewer-01")


@pytest.mark.parametrize(
    "token", ["", PHYSICIAN_TOKEN + "x", PHYSICIAN_TOKEN[:-1], token_hash(PHYSICIAN_TOKEN)]
)
def test_a_wrong_token_gives_nothing(directory: UserDirectory, token: str) -> None:
    assert directory.authenticate_token(token) is None


def test_token_check_uses_compare_digest_on_every_hash(
    directory: UserDirectory, monkeypatch: pytest.MonkeyPatch
) -> None:
    compared: list[str] = []
    real = auth.hmac.compare_digest

    def spy(a: str, b: str) -> bool:
        compared.append(a)
        return real(a, b)

    monkeypatch.setattr(auth.hmac, "compare_digest", spy)
    directory.authenticate_token(PHYSICIAN_TOKEN)  # matches the first hash, still checks both
    assert len(compared) == 2


def test_operator_helpers_make_usable_hashes_and_tokens() -> None:
    password_hash = hash_password("correct horse battery staple")
    assert password_hash.startswith("$argon2id$")
    assert PasswordHasher().verify(password_hash, "correct horse battery staple")
    with pytest.raises(ValueError, match="empty password"):
        hash_password("")
    token, digest = new_token()
    assert len(token) >= 43 and digest == hashlib.sha256(token.encode()).hexdigest()
    assert new_token()[0] != token


def test_the_command_line_prints_a_token_and_a_hash(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    assert auth.main(["new-token"]) == 0
    lines = capsys.readouterr().out.splitlines()
    token, digest = lines[0].split()[1], lines[1].split()[1]
    assert token_hash(token) == digest
    monkeypatch.setattr("sys.stdin", io.StringIO("s3cret-pass\n"))
    assert auth.main(["hash-password"]) == 0
    assert PasswordHasher().verify(capsys.readouterr().out.strip(), "s3cret-pass")
    assert auth.main(["bogus"]) == 2


# -- sessions -----------------------------------------------------------------------------------


def test_a_session_round_trips(directory: UserDirectory) -> None:
    sessions = Sessions(directory, SECRET, clock=Clock())
    user = directory.get("site-gz01")
    cookie = sessions.issue_session(user)
    assert sessions.read_session(cookie) == user


def test_a_session_expires_after_max_age(directory: UserDirectory) -> None:
    clock = Clock()
    sessions = Sessions(directory, SECRET, max_age=timedelta(hours=12), clock=clock)
    cookie = sessions.issue_session(directory.get("viewer-01"))
    clock.now += 12 * 3600 - 1
    assert sessions.read_session(cookie) == directory.get("viewer-01")
    clock.now += 1
    assert sessions.read_session(cookie) is None


def test_a_session_from_the_future_or_longer_than_max_age_is_refused(
    directory: UserDirectory,
) -> None:
    clock = Clock()
    issuer = Sessions(directory, SECRET, max_age=timedelta(hours=24), clock=clock)
    cookie = issuer.issue_session(directory.get("viewer-01"))
    assert (
        Sessions(directory, SECRET, max_age=timedelta(hours=12), clock=clock).read_session(cookie)
        is None
    )  # the service's max_age was shortened since
    clock.now -= 3600
    assert issuer.read_session(cookie) is None  # issued an hour from now


def tamper(cookie: str, user_id: str) -> str:
    payload, signature = cookie.split(".")
    claims = auth.json.loads(auth._b64decode(payload))
    claims["u"] = user_id
    return auth._b64encode(auth.json.dumps(claims).encode()) + "." + signature


def test_a_tampered_or_foreign_session_is_refused(directory: UserDirectory) -> None:
    sessions = Sessions(directory, SECRET, clock=Clock())
    cookie = sessions.issue_session(directory.get("viewer-01"))
    payload, signature = cookie.split(".")
    assert sessions.read_session(tamper(cookie, "physician-01")) is None
    assert sessions.read_session(payload + "." + signature[:-2] + "AA") is None
    assert sessions.read_session(payload) is None
    assert sessions.read_session("." + signature) is None
    assert sessions.read_session("") is None
    assert sessions.read_session(None) is None
    assert sessions.read_session("x" * 5000) is None
    other = Sessions(directory, "t" * 40, clock=Clock())
    assert other.read_session(cookie) is None


def test_a_signed_but_malformed_payload_is_refused(directory: UserDirectory) -> None:
    sessions = Sessions(directory, SECRET, clock=Clock())
    for claims in (b"not json", b"[]", b'{"u": ["x"], "iat": 1, "exp": 2, "pw": "x"}'):
        payload = auth._b64encode(claims)
        assert sessions.read_session(f"{payload}.{sessions._sign(payload)}") is None


def test_a_session_ends_when_the_user_leaves_or_changes_password(
    directory: UserDirectory,
) -> None:
    clock = Clock()
    cookie = Sessions(directory, SECRET, clock=clock).issue_session(directory.get("viewer-01"))
    new_password = UserDirectory.parse(users_yaml(viewer_password="new-pass"), "users.yaml")
    assert Sessions(new_password, SECRET, clock=clock).read_session(cookie) is None
    without_viewer = UserDirectory.parse(
        users_yaml().replace("viewer-01", "viewer-09"), "users.yaml"
    )
    assert Sessions(without_viewer, SECRET, clock=clock).read_session(cookie) is None


def test_a_session_gives_the_users_current_role() -> None:
    text = users_yaml(extra="")
    before = UserDirectory.parse(text, "users.yaml")
    clock = Clock()
    cookie = Sessions(before, SECRET, clock=clock).issue_session(before.get("viewer-01"))
    # Same password hash, role changed by the operator: the session now carries the new role.
    after = UserDirectory.parse(
        text.replace("role: viewer\n    site_id: null", "role: safety-physician"), "users.yaml"
    )
    assert Sessions(after, SECRET, clock=clock).read_session(cookie) == User(
        "viewer-01", Role.SAFETY_PHYSICIAN
    )


def test_sessions_need_a_real_secret_and_a_known_user(directory: UserDirectory) -> None:
    with pytest.raises(ValueError, match="at least 32 characters"):
        Sessions(directory, "short")
    with pytest.raises(ValueError, match="SESSION_SECRET is not set"):
        Sessions.from_env(directory, {})
    sessions = Sessions.from_env(directory, {"SESSION_SECRET": SECRET})
    with pytest.raises(ValueError, match="not in the directory"):
        sessions.issue_session(User("ghost", Role.VIEWER))
    with pytest.raises(ValueError, match="not in the directory"):
        sessions.issue_session(User("viewer-01", Role.SAFETY_PHYSICIAN))  # not their role
    options = sessions.cookie_options()
    assert options["httponly"] and options["secure"] and options["samesite"] == "strict"
    assert options["max_age"] == 12 * 3600


# -- roles and sites ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("user", "site_id", "visible"),
    [
        (User("p", Role.SAFETY_PHYSICIAN), "GZ01", True),
        (User("p", Role.SAFETY_PHYSICIAN), None, True),
        (User("v", Role.VIEWER), "SH02", True),
        (User("s", Role.SITE_USER, "GZ01"), "GZ01", True),
        (User("s", Role.SITE_USER, "GZ01"), "SH02", False),
        (User("s", Role.SITE_USER, "GZ01"), "gz01", False),
        (User("s", Role.SITE_USER, "GZ01"), None, False),
    ],
)
def test_can_see(user: User, site_id: str | None, visible: bool) -> None:
    assert can_see(user, site_id) is visible


def test_permissions_of_each_role() -> None:
    physician, viewer = User("p", Role.SAFETY_PHYSICIAN), User("v", Role.VIEWER)
    site = User("s", Role.SITE_USER, "GZ01")
    assert all(may(physician, p) for p in Permission)
    for user in (viewer, site):
        assert may(user, Permission.READ)
        assert not may(user, Permission.ACKNOWLEDGE) and not may(user, Permission.RESOLVE)


def test_check_role_refuses_with_a_clear_reason() -> None:
    check_role(User("p", Role.SAFETY_PHYSICIAN), [Role.SAFETY_PHYSICIAN], "resolve alerts")
    with pytest.raises(HTTPException) as refused:
        check_role(User("s", Role.SITE_USER, "GZ01"), [Role.SAFETY_PHYSICIAN], "resolve alerts")
    assert refused.value.status_code == 403
    assert refused.value.detail == (
        "role site-user may not resolve alerts (allowed: safety-physician)"
    )


# -- the FastAPI dependencies -------------------------------------------------------------------


@pytest.fixture
def sessions(directory: UserDirectory) -> Sessions:
    return Sessions(directory, SECRET)


@pytest.fixture
async def client(directory: UserDirectory, sessions: Sessions) -> AsyncIterator[httpx.AsyncClient]:
    current_user = user_dependency(directory, sessions)
    physician = require_role(
        Role.SAFETY_PHYSICIAN, current_user=current_user, action="acknowledge alerts"
    )
    readers = require_role(
        Role.SAFETY_PHYSICIAN, Role.VIEWER, current_user=current_user, action="export the log"
    )
    app = FastAPI()

    @app.get("/me")
    async def me(request: Request, user: Annotated[User, Depends(current_user)]) -> dict:
        return {"user_id": user.user_id, "via": request.state.auth_method}

    @app.post("/acknowledge")
    async def acknowledge(user: Annotated[User, Depends(physician)]) -> dict:
        return {"by": user.user_id}

    @app.get("/export")
    async def export(user: Annotated[User, Depends(readers)]) -> dict:
        return {"by": user.user_id}

    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://app") as client:
        yield client


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def session_cookie(cookie: str) -> dict[str, str]:
    return {"Cookie": f"{SESSION_COOKIE}={cookie}"}


async def test_a_bearer_token_signs_in(client: httpx.AsyncClient) -> None:
    answer = await client.get("/me", headers=bearer(VIEWER_TOKEN))
    assert answer.status_code == 200
    assert answer.json() == {"user_id": "viewer-01", "via": "token"}


async def test_a_session_cookie_signs_in(
    client: httpx.AsyncClient, sessions: Sessions, directory: UserDirectory
) -> None:
    cookie = sessions.issue_session(directory.get("site-gz01"))
    answer = await client.get("/me", headers=session_cookie(cookie))
    assert answer.json() == {"user_id": "site-gz01", "via": "session"}


@pytest.mark.parametrize(
    ("headers", "challenge"),
    [
        ({}, "Bearer"),
        (bearer("wrong-" + "x" * 40), 'Bearer error="invalid_token"'),
        ({"Authorization": "Basic dmlld2VyLTAxOnZ3LXBhc3M="}, 'Bearer error="invalid_request"'),
        ({"Authorization": "Bearer "}, 'Bearer error="invalid_request"'),
        (session_cookie("forged.cookie"), "Bearer"),
    ],
)
async def test_no_or_bad_credentials_get_401_with_a_bearer_challenge(
    client: httpx.AsyncClient, headers: dict, challenge: str
) -> None:
    answer = await client.get("/me", headers=headers)
    assert answer.status_code == 401
    assert answer.headers["www-authenticate"] == challenge


async def test_a_bad_token_is_not_passed_over_for_a_good_cookie(
    client: httpx.AsyncClient, sessions: Sessions, directory: UserDirectory
) -> None:
    cookie = sessions.issue_session(directory.get("physician-01"))
    headers = bearer("wrong-" + "x" * 40) | session_cookie(cookie)
    assert (await client.get("/me", headers=headers)).status_code == 401


async def test_roles_are_enforced_with_a_clear_403(client: httpx.AsyncClient) -> None:
    allowed = await client.post("/acknowledge", headers=bearer(PHYSICIAN_TOKEN))
    assert allowed.json() == {"by": "physician-01"}
    refused = await client.post("/acknowledge", headers=bearer(VIEWER_TOKEN))
    assert refused.status_code == 403
    assert refused.json() == {
        "detail": "role viewer may not acknowledge alerts (allowed: safety-physician)"
    }
    assert (await client.get("/export", headers=bearer(VIEWER_TOKEN))).status_code == 200
    assert (await client.post("/acknowledge")).status_code == 401  # not signed in: 401, not 403


def test_require_role_needs_a_role() -> None:
    async def current_user() -> User:
        raise AssertionError

    with pytest.raises(ValueError, match="at least one role"):
        require_role(current_user=current_user)
    with pytest.raises(ValueError):
        require_role("admin", current_user=current_user)  # type: ignore[arg-type]
