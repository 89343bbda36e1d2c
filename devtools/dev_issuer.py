"""A stand-in for Better Auth's JWT plugin, for local demos and tests only.

It publishes its Ed25519 public keys at ``/api/auth/jwks`` on 127.0.0.1 and mints EdDSA tokens shaped like
Better Auth's: header ``alg`` + ``kid`` (no ``typ``); claims ``iat``, ``exp``, ``iss``, ``aud``, ``sub``,
with ``iss`` = ``aud`` = the base URL. It must never be reachable from outside the machine.
"""

from __future__ import annotations

import base64
import json
import secrets
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import jwt
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from devtools.background_server import serve_in_background, shut_down

JWKS_PATH = "/api/auth/jwks"


def public_jwk(private_key: Ed25519PrivateKey, kid: str) -> dict[str, str]:
    """The JWK Better Auth publishes for an Ed25519 key."""
    raw = private_key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
    x = base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")
    return {"kty": "OKP", "crv": "Ed25519", "x": x, "alg": "EdDSA", "kid": kid}


class DevJwtIssuer:
    """Serves a JWKS and mints tokens; the newest key signs, every key stays published."""

    def __init__(self) -> None:
        self._keys: list[tuple[str, Ed25519PrivateKey]] = []
        self._lock = threading.Lock()
        self._requests = 0
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self._base_url: str | None = None
        self.rotate()

    # -- keys and tokens -------------------------------------------------------------------------------

    @property
    def kid(self) -> str:
        """The id of the key that signs new tokens."""
        return self._keys[-1][0]

    @property
    def private_key(self) -> Ed25519PrivateKey:
        return self._keys[-1][1]

    def rotate(self) -> str:
        """Add a fresh key that signs from now on; earlier keys stay published. Returns its kid."""
        kid = secrets.token_urlsafe(16)
        with self._lock:
            self._keys = [*self._keys, (kid, Ed25519PrivateKey.generate())]
        return kid

    def jwks(self) -> dict[str, list[dict[str, str]]]:
        return {"keys": [public_jwk(key, kid) for kid, key in self._keys]}

    def mint(self, sub: str | None, /, *, ttl_seconds: int = 900, **claims: Any) -> str:
        """An EdDSA token for ``sub``. ``claims`` add or override claims; a ``None`` value removes one."""
        now = int(time.time())
        payload: dict[str, Any] = {
            "iat": now,
            "exp": now + ttl_seconds,
            "iss": self.base_url,
            "aud": self.base_url,
            "sub": sub,
        }
        payload.update(claims)
        payload = {name: value for name, value in payload.items() if value is not None}
        return jwt.encode(
            payload, self.private_key, algorithm="EdDSA", headers={"kid": self.kid, "typ": None}
        )

    # -- HTTP ------------------------------------------------------------------------------------------

    @property
    def jwks_requests(self) -> int:
        """How many JWKS requests the server has answered."""
        with self._lock:
            return self._requests

    @property
    def base_url(self) -> str:
        """The issuer and audience of its tokens; kept after ``stop`` so tokens can still be minted."""
        if self._base_url is None:
            raise RuntimeError("the dev issuer has not been started")
        return self._base_url

    @property
    def jwks_url(self) -> str:
        return self.base_url + JWKS_PATH

    def start(self) -> DevJwtIssuer:
        if self._server is not None:
            return self
        issuer = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                if self.path != JWKS_PATH:
                    self.send_error(404)
                    return
                with issuer._lock:
                    issuer._requests += 1
                body = json.dumps(issuer.jwks()).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:
                """Quiet: tests and demos do not want an access log."""

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._base_url = f"http://127.0.0.1:{self._server.server_address[1]}"
        self._thread = serve_in_background(self._server, "dev-jwt-issuer")
        return self

    def stop(self) -> None:
        """Stop serving: connections to the port are refused from now on."""
        server, thread = self._server, self._thread
        self._server = self._thread = None
        shut_down(server, thread)

    def __enter__(self) -> DevJwtIssuer:
        return self.start()

    def __exit__(self, *_: object) -> None:
        self.stop()
