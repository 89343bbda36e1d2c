"""A real Better Auth server (tests/better_auth/server.mjs under Node) for the tests that need one.

Import the ``better_auth_server`` fixture (or use ``running_better_auth``) from this module. The server keeps
everything in memory, listens on a free loopback port with a random secret, and fails the test run with a
message saying what to do when Node or ``tests/better_auth/node_modules`` is missing (``make node``).

Formats observed with better-auth 1.7.25 (``tests/better_auth/package.json``):

* session token: 32 characters of ``[A-Za-z0-9]`` (``session.token`` in ``get-session``; ``token`` in the
  sign-up / sign-in body);
* signed value: ``<token>.<base64(HMAC-SHA256(secret, token))>`` (standard alphabet, ``=`` padded, 44
  characters), sent back raw in the ``set-auth-token`` response header (bearer plugin) and URL-encoded as
  the ``better-auth.session_token`` cookie; ``Authorization: Bearer`` accepts either form, and also the bare
  token (the bearer plugin signs it itself unless ``bearer({requireSignature: true})``);
* ``GET /api/auth/get-session``: 200 ``{"session": {...}, "user": {...}}`` (plus a ``set-auth-jwt`` header)
  when valid, 200 ``null`` when missing, unsigned-in-a-cookie, tampered or signed out.
"""

from __future__ import annotations

import os
import secrets
import shutil
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
import requests

from devtools.local_stack import LocalProcess, LocalServiceError, answers_ok, free_port, wait_until
from tests import leaks

SERVER_DIR = Path(__file__).resolve().parent / "better_auth"
SESSION_COOKIE = "better-auth.session_token"
TIMEOUT = 10.0


@dataclass(frozen=True)
class Session:
    user_id: str
    #: The ``better-auth.session_token`` cookie value as the browser stores it (URL-encoded signed token).
    session_token_cookie_value: str
    #: What ``Authorization: Bearer`` carries: the signed token from the ``set-auth-token`` header.
    bearer_value: str
    #: The bare session token (``session.token``), as the database stores it.
    token: str


class BetterAuthServer:
    """A running server: ``url`` is its base URL, which is also the JWTs' ``iss`` and ``aud``."""

    def __init__(self, process: LocalProcess, secret: str) -> None:
        self._process = process
        self._secret = secret
        self.url = process.url
        self.jwks_url = f"{self.url}/api/auth/jwks"
        self._http = requests.Session()

    @property
    def secret(self) -> str:
        """BETTER_AUTH_SECRET, which the API needs to check session tokens locally."""
        return self._secret

    def _post(self, path: str, headers: dict[str, str] | None = None, **kwargs: Any) -> requests.Response:
        return self._http.post(
            f"{self.url}{path}", headers={"Origin": self.url, **(headers or {})}, timeout=TIMEOUT, **kwargs
        )

    def _get(self, path: str, headers: dict[str, str] | None = None) -> requests.Response:
        return self._http.get(f"{self.url}{path}", headers=headers or {}, timeout=TIMEOUT)

    def sign_up(self, email: str, password: str, name: str = "Test User") -> Session:
        response = self._post(
            "/api/auth/sign-up/email", json={"email": email, "password": password, "name": name}
        )
        return self._session_from(response, "sign-up")

    def sign_in(self, email: str, password: str) -> Session:
        response = self._post("/api/auth/sign-in/email", json={"email": email, "password": password})
        return self._session_from(response, "sign-in")

    def _session_from(self, response: requests.Response, what: str) -> Session:
        if response.status_code != 200:
            raise AssertionError(f"Better Auth {what} failed: HTTP {response.status_code} {response.text}")
        cookie = response.cookies.get(SESSION_COOKIE)
        bearer = response.headers.get("set-auth-token")
        if not cookie or not bearer:
            raise AssertionError(f"Better Auth {what} returned no session cookie / set-auth-token header")
        self._http.cookies.clear()  # the helpers authenticate explicitly, never by a remembered cookie
        body = response.json()
        leaks.register_session_token(body["token"])
        return Session(
            user_id=body["user"]["id"],
            session_token_cookie_value=cookie,
            bearer_value=bearer,
            token=body["token"],
        )

    def get_session(self, bearer: str) -> requests.Response:
        """The raw ``GET /api/auth/get-session`` answer for ``Authorization: Bearer <bearer>``."""
        return self._get("/api/auth/get-session", {"Authorization": f"Bearer {bearer}"})

    def jwt(self, session: Session) -> str:
        response = self._get("/api/auth/token", {"Authorization": f"Bearer {session.bearer_value}"})
        if response.status_code != 200:
            raise AssertionError(f"Better Auth /token failed: HTTP {response.status_code} {response.text}")
        token: str = response.json()["token"]
        return token

    def sign_out(self, session: Session) -> None:
        response = self._post("/api/auth/sign-out", {"Authorization": f"Bearer {session.bearer_value}"})
        if response.status_code != 200 or response.json() != {"success": True}:
            raise AssertionError(f"Better Auth sign-out failed: HTTP {response.status_code} {response.text}")

    def rotate_jwks(self) -> int:
        """Expire every current signing key (as ``jwks.rotationInterval`` would); returns how many.

        The next JWT is signed by a newly minted key; the expired keys stay in the JWKS for the plugin's
        grace period (30 days by default), so tokens they signed keep verifying until their ``exp``.
        """
        response = self._post("/__test/rotate-jwks", {"x-test-admin": self._secret})
        if response.status_code != 200:
            raise AssertionError(f"JWKS rotation failed: HTTP {response.status_code} {response.text}")
        rotated: int = response.json()["rotated"]
        return rotated

    def stop(self) -> None:
        self._http.close()
        self._process.stop()


def start_better_auth(log_path: Path | None = None) -> BetterAuthServer:
    node = shutil.which("node")
    if node is None:
        raise LocalServiceError("node is not installed; the Better Auth test server needs Node.js >= 20")
    if not (SERVER_DIR / "node_modules" / "better-auth").is_dir():
        raise LocalServiceError(
            f"{SERVER_DIR / 'node_modules'} is missing; run `make node` (npm ci in tests/better_auth)"
        )
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    secret = secrets.token_urlsafe(32)
    env = {**os.environ, "PORT": str(port), "BETTER_AUTH_SECRET": secret, "BASE_URL": url}
    env.pop("BETTER_AUTH_URL", None)
    if log_path is None:
        process = subprocess.Popen(
            [node, "server.mjs"], cwd=SERVER_DIR, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT
        )
    else:
        with open(log_path, "ab") as log:  # the child keeps its own descriptor
            process = subprocess.Popen([node, "server.mjs"], cwd=SERVER_DIR, env=env, stdout=log, stderr=log)
    try:
        wait_until(lambda: answers_ok(f"{url}/api/auth/ok"), timeout=30, what="better-auth", process=process)
    except LocalServiceError as error:
        where = f"; see {log_path}" if log_path else ""
        raise LocalServiceError(f"{error}{where}") from None
    return BetterAuthServer(LocalProcess("better-auth", process, url), secret)


def cookie_value(signed: str) -> str:
    """The cookie form of a signed token: URL-encoded, as Better Auth sets it."""
    return quote(signed, safe="")


@contextmanager
def running_better_auth(
    tmp_path_factory: pytest.TempPathFactory, name: str = "better-auth"
) -> Iterator[BetterAuthServer]:
    """A server of its own while the block runs, its log in a fresh temporary directory named ``name``."""
    server = start_better_auth(log_path=tmp_path_factory.mktemp(name) / "better-auth.log")
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def better_auth_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[BetterAuthServer]:
    with running_better_auth(tmp_path_factory) as server:
        yield server
