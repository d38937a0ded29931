"""The old home of the built-in host functions, kept so its import paths keep working.

The functions live in :mod:`gonext_plugins.host_functions` (one module each), their errors in
:mod:`gonext_plugins.errors`. ``resolve_host``, the resolver hook of ``http.fetch``, must be replaced
on :mod:`gonext_plugins.host_functions.http_fetch`, where it is read; assigning it here changes
nothing.
"""

from __future__ import annotations

from .errors import (
    BadHostCallPayload,
    FetchDenied,
    FetchError,
    FetchTimeout,
    HostFunctionError,
    KVQuotaExceeded,
    ResponseTooLarge,
)
from .host_functions import register_all
from .host_functions.http_fetch import (
    DEFAULT_PORTS,
    FORBIDDEN_HEADERS,
    MAX_REDIRECTS,
    MAX_REQUEST_HEADERS,
    METHODS,
    REDIRECT_STATUSES,
    AddressInfo,
    http_fetch,
    resolve_host,
)
from .host_functions.jobs import enqueue_host_function
from .host_functions.kv import MAX_KEY_LENGTH, kv_delete, kv_get, kv_list, kv_set
from .host_functions.log import log

__all__ = [
    "DEFAULT_PORTS", "FORBIDDEN_HEADERS", "MAX_KEY_LENGTH", "MAX_REDIRECTS", "MAX_REQUEST_HEADERS",
    "METHODS", "REDIRECT_STATUSES", "AddressInfo", "BadHostCallPayload", "FetchDenied", "FetchError",
    "FetchTimeout", "HostFunctionError", "KVQuotaExceeded", "ResponseTooLarge", "enqueue_host_function",
    "http_fetch", "kv_delete", "kv_get", "kv_list", "kv_set", "log", "register_all", "resolve_host",
]
