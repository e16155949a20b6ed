"""Server interceptors, outermost first: request id & errors → auth → rate limits → scopes → quota."""

from server.interceptors.auth import AuthInterceptor
from server.interceptors.errors import ErrorInterceptor, status_for_error
from server.interceptors.limits import QuotaInterceptor, RateLimitInterceptor
from server.interceptors.permissions import ScopeInterceptor

__all__ = [
    "AuthInterceptor",
    "ErrorInterceptor",
    "QuotaInterceptor",
    "RateLimitInterceptor",
    "ScopeInterceptor",
    "status_for_error",
]
