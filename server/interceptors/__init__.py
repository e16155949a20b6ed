"""Server interceptors, outermost first: request id & errors → auth → limits (rate, scope, quota)."""

from server.interceptors.auth import AuthInterceptor
from server.interceptors.chain import InterceptorChain
from server.interceptors.errors import ErrorInterceptor, status_for_error
from server.interceptors.limits import LimitsInterceptor

__all__ = ["AuthInterceptor", "ErrorInterceptor", "InterceptorChain", "LimitsInterceptor", "status_for_error"]
