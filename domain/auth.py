"""Choosing how to check a caller, by AUTH_MODE: Better Auth JWTs, session tokens, or both."""

from __future__ import annotations

import re

from domain.model import Credentials
from domain.ports import Authenticator

_JWT_SHAPE = re.compile(r"^eyJ[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+$")


class JwtOrSession(Authenticator):
    """A bearer value shaped like a JWT is checked as one; anything else (another bearer value, a
    session cookie) as a session token. Neither path falls back to the other."""

    def __init__(self, *, jwt: Authenticator, session: Authenticator) -> None:
        self._jwt = jwt
        self._session = session

    def authenticate(self, credentials: Credentials) -> str:
        if credentials.bearer and _JWT_SHAPE.fullmatch(credentials.bearer):
            return self._jwt.authenticate(credentials)
        return self._session.authenticate(credentials)
