"""The error tree. Services raise these; one handler turns them into OpenAI-shaped JSON.

StratumError                      500 internal_error
├── InvalidRequest                400 invalid_request_error
│   ├── UnsupportedFeature        400 invalid_request_error / unsupported
│   └── ContentBlocked            400 invalid_request_error / content_blocked (names the rule)
├── AuthenticationError           401 authentication_error / invalid_api_key
├── PermissionDenied              403 permission_error
│   └── PolicyDenied              403 permission_error / policy_denied (names the rule)
├── NotFound                      404 not_found_error
│   └── ModelNotFound             404 invalid_request_error / model_not_found
├── Conflict                      409 conflict_error
├── RateLimited                   429 rate_limit_error
│   └── QuotaExceeded             429 rate_limit_error / <metric>_exceeded (names the limit)
├── EngineError                   500 engine_error
│   └── UpstreamError             502 upstream_error
└── Overloaded                    503 overloaded_error (carries retry_after)
"""

from __future__ import annotations


class StratumError(Exception):
    status_code: int = 500
    type: str = "internal_error"
    code: str | None = None

    def __init__(self, message: str, *, param: str | None = None, code: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.param = param
        if code is not None:
            self.code = code

    def to_dict(self) -> dict[str, dict[str, str | None]]:
        return {"error": {"message": self.message, "type": self.type, "param": self.param, "code": self.code}}


class InvalidRequest(StratumError):
    status_code = 400
    type = "invalid_request_error"


class UnsupportedFeature(InvalidRequest):
    code = "unsupported"


class PayloadTooLarge(InvalidRequest):
    """An upload over its size limit (413)."""

    status_code = 413
    code = "payload_too_large"


class ContentBlocked(InvalidRequest):
    """The content guard refused a prompt; ``rule`` names why (``guard.pii.id_card``, ``guard.words``,
    ``guard.injection``), also sent as ``error.rule``."""

    code = "content_blocked"

    def __init__(self, message: str, *, rule: str, param: str | None = None) -> None:
        super().__init__(f"Blocked by rule '{rule}': {message}", param=param)
        self.rule = rule

    def to_dict(self) -> dict[str, dict[str, str | None]]:
        body = super().to_dict()
        body["error"]["rule"] = self.rule
        return body


class AuthenticationError(StratumError):
    status_code = 401
    type = "authentication_error"
    code = "invalid_api_key"


class PermissionDenied(StratumError):
    status_code = 403
    type = "permission_error"


class PolicyDenied(PermissionDenied):
    """A policy rule denied the request; ``rule`` names it (also sent as ``error.rule``)."""

    code = "policy_denied"

    def __init__(self, message: str, *, rule: str, param: str | None = None) -> None:
        super().__init__(f"Denied by rule '{rule}': {message}", param=param)
        self.rule = rule

    def to_dict(self) -> dict[str, dict[str, str | None]]:
        body = super().to_dict()
        body["error"]["rule"] = self.rule
        return body


class NotFound(StratumError):
    status_code = 404
    type = "not_found_error"


class ModelNotFound(NotFound):
    type = "invalid_request_error"
    code = "model_not_found"


class Conflict(StratumError):
    status_code = 409
    type = "conflict_error"


class RateLimited(StratumError):
    status_code = 429
    type = "rate_limit_error"


class QuotaExceeded(RateLimited):
    """A request would pass a limit; ``limit`` names it (e.g. ``project.tpm``), sent as ``error.limit``."""

    def __init__(self, message: str, *, limit: str, code: str) -> None:
        super().__init__(message, code=code)
        self.limit = limit

    def to_dict(self) -> dict[str, dict[str, str | None]]:
        body = super().to_dict()
        body["error"]["limit"] = self.limit
        return body


class EngineError(StratumError):
    type = "engine_error"


class UpstreamError(EngineError):
    status_code = 502
    type = "upstream_error"


class Overloaded(StratumError):
    status_code = 503
    type = "overloaded_error"
    code = "engine_saturated"

    def __init__(self, message: str, *, retry_after: int = 1) -> None:
        super().__init__(message)
        self.retry_after = retry_after
