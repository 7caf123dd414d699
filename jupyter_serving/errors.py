"""The one error root of the server: every failure a client can see carries its wire form.

    ServingError (error_code, http_status)
    ├── InvalidParameterValue   400 INVALID_PARAMETER_VALUE
    ├── BadRequest              400 BAD_REQUEST         (scoring payloads, MLflow's scorer code)
    ├── InvalidState            400 INVALID_STATE
    ├── Unauthenticated         401 UNAUTHENTICATED
    ├── PermissionDenied        403 PERMISSION_DENIED
    ├── ResourceDoesNotExist    404 RESOURCE_DOES_NOT_EXIST
    ├── EndpointNotFound        404 ENDPOINT_NOT_FOUND  (unknown route)
    ├── ResourceAlreadyExists   409 RESOURCE_ALREADY_EXISTS
    ├── ResourceConflict        409 RESOURCE_CONFLICT
    ├── FeatureDisabled         400 FEATURE_DISABLED    (Databricks features a local server lacks)
    ├── PayloadTooLarge         413 BAD_REQUEST
    ├── UnsupportedMediaType    415 BAD_REQUEST         (as `mlflow models serve` answers)
    ├── RequestLimitExceeded    429 REQUEST_LIMIT_EXCEEDED (carries Retry-After)
    ├── InternalError           500 INTERNAL_ERROR
    ├── TemporarilyUnavailable  503 TEMPORARILY_UNAVAILABLE (carries Retry-After)
    └── DeadlineExceeded        504 DEADLINE_EXCEEDED

Handlers map these to HTTP in exactly one place, `send_error` below (used by the API handlers and the
route-optimized listener alike).
Messages must never contain the string "Unexpected error": the Databricks SDK retries any error
whose message does, for up to five minutes.
"""

from __future__ import annotations

import json
from typing import Any, ClassVar


class ServingError(Exception):
    """Base of every error that reaches a client as `{"error_code", "message"}`."""

    error_code: ClassVar[str] = "INTERNAL_ERROR"
    http_status: ClassVar[int] = 500

    def __init__(self, message: str, *, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.headers = headers or {}

    def to_json(self) -> dict[str, Any]:
        return {"error_code": self.error_code, "message": self.message}


class InvalidParameterValue(ServingError):
    error_code = "INVALID_PARAMETER_VALUE"
    http_status = 400


class BadRequest(ServingError):
    error_code = "BAD_REQUEST"
    http_status = 400


class InvalidState(ServingError):
    error_code = "INVALID_STATE"
    http_status = 400


class Unauthenticated(ServingError):
    error_code = "UNAUTHENTICATED"
    http_status = 401


class PermissionDenied(ServingError):
    error_code = "PERMISSION_DENIED"
    http_status = 403


class ResourceDoesNotExist(ServingError):
    error_code = "RESOURCE_DOES_NOT_EXIST"
    http_status = 404


class EndpointNotFound(ServingError):
    error_code = "ENDPOINT_NOT_FOUND"
    http_status = 404


class ResourceAlreadyExists(ServingError):
    error_code = "RESOURCE_ALREADY_EXISTS"
    http_status = 409


class ResourceConflict(ServingError):
    error_code = "RESOURCE_CONFLICT"
    http_status = 409


class PayloadTooLarge(ServingError):
    error_code = "BAD_REQUEST"
    http_status = 413


class FeatureDisabled(ServingError):
    error_code = "FEATURE_DISABLED"
    http_status = 400


class UnsupportedMediaType(ServingError):
    error_code = "BAD_REQUEST"
    http_status = 415


class RequestLimitExceeded(ServingError):
    error_code = "REQUEST_LIMIT_EXCEEDED"
    http_status = 429


class InternalError(ServingError):
    error_code = "INTERNAL_ERROR"
    http_status = 500


class TemporarilyUnavailable(ServingError):
    error_code = "TEMPORARILY_UNAVAILABLE"
    http_status = 503


class DeadlineExceeded(ServingError):
    error_code = "DEADLINE_EXCEEDED"
    http_status = 504


def send_error(handler: Any, error: ServingError, request_id: str | None, status: int | None = None) -> None:
    """Finish a Tornado request with `error` in Databricks' wire form: status, the error's own
    headers (Retry-After), the request id, and the `{"error_code", "message"}` body."""
    handler.set_status(status or error.http_status)
    for key, value in error.headers.items():
        handler.set_header(key, value)
    if request_id:
        handler.set_header("x-request-id", request_id)
    handler.finish(json.dumps(error.to_json()))
