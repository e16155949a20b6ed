"""Server interceptors, outermost first: request id & errors → auth → limits."""

from server.interceptors.auth import AuthInterceptor
from server.interceptors.errors import ErrorInterceptor, status_for_error

__all__ = ["AuthInterceptor", "ErrorInterceptor", "status_for_error"]
