"""Errors both implementations raise; one handler turns them into {"detail": ...} responses."""


class ServiceError(Exception):
    status_code = 500

    def __init__(self, detail: str):
        super().__init__(detail)
        self.detail = detail


class NotFound(ServiceError):
    status_code = 404


class Conflict(ServiceError):
    status_code = 409


class InvalidInput(ServiceError):
    status_code = 422


class InjectedFault(ServiceError):
    """Raised by the DOMAIN_ERROR_RATE / LEGACY_ERROR_RATE knobs to rehearse a failing rollout."""

    status_code = 500
