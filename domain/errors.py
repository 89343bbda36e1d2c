"""Domain errors. Each carries a stable snake_case ``code``; entrypoints map codes to transport statuses."""

from __future__ import annotations


class DomainError(Exception):
    """Base of every error the domain raises on purpose."""

    code: str = "domain_error"
    retryable: bool = False

    def __init__(self, detail: str, *, code: str | None = None) -> None:
        super().__init__(detail)
        self.detail = detail
        if code is not None:
            self.code = code


class InvalidRequest(DomainError):
    """The caller asked for something the policy does not allow; nothing was changed."""

    code = "invalid_request"


class Unauthenticated(DomainError):
    """The credentials are missing, malformed, expired or not ours."""

    code = "unauthenticated"


class DependencyUnavailable(DomainError):
    """A dependency (database, object storage, auth server, queue) failed; retrying later may work."""

    code = "dependency_unavailable"
    retryable = True


class StorageUnavailable(DependencyUnavailable):
    code = "storage_unavailable"


class PersistenceUnavailable(DependencyUnavailable):
    code = "database_unavailable"


class AuthUnavailable(DependencyUnavailable):
    code = "auth_unavailable"


class NotFound(DomainError):
    """Nothing of the caller's by that id (another user's resource is reported the same way)."""

    code = "not_found"


class Forbidden(DomainError):
    """The caller named something that is not theirs to act on; nothing was touched."""

    code = "forbidden"


class Conflict(DomainError):
    """The resource is not in a state that allows this yet; retrying later may work."""

    code = "conflict"
    retryable = True


class Gone(DomainError):
    """The resource expired; the caller has to start over (for an upload: ask for a new URL)."""

    code = "gone"
    retryable = True


class ContentRejected(InvalidRequest):
    """What was uploaded is not an acceptable selfie; it has been deleted."""

    code = "content_rejected"


class GenerationFailed(DomainError):
    """fal.ai could not produce the try-on. ``code`` is one of the contract's try-on error codes:
    content_policy_violation, invalid_request, upstream_unavailable, upstream_timeout, source_expired,
    generation_failed. ``retryable`` says whether another attempt (with a fresh URL) may succeed."""

    code = "generation_failed"

    def __init__(self, detail: str, *, code: str | None = None, retryable: bool = False) -> None:
        super().__init__(detail, code=code)
        self.retryable = retryable


class QueueUnavailable(DependencyUnavailable):
    code = "queue_unavailable"


class LimitExceeded(DomainError):
    """The caller is over one of their limits (``too_many_active_tryons``, ``quota_exceeded``); nothing was
    changed. ``retry_after_seconds`` says when asking again may succeed."""

    code = "rate_limited"
    retryable = True

    def __init__(self, detail: str, *, code: str, retry_after_seconds: int) -> None:
        super().__init__(detail, code=code)
        self.retry_after_seconds = max(1, retry_after_seconds)
