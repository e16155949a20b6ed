"""Server interceptors, outermost first: request id & errors → auth → limits (rate, scope, quota) → text."""

from server.interceptors.auth import AuthInterceptor
from server.interceptors.chain import InterceptorChain
from server.interceptors.errors import ErrorInterceptor, status_for_error
from server.interceptors.limits import LimitsInterceptor
from server.interceptors.text import TextInterceptor

__all__ = [
    "AuthInterceptor",
    "ErrorInterceptor",
    "InterceptorChain",
    "LimitsInterceptor",
    "TextInterceptor",
    "status_for_error",
]
