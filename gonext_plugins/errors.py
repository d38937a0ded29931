"""Typed errors for every layer of gonext_plugins.

Every error derives from :class:`PluginError`, carries the plugin slug when one is known, and has a
stable machine-readable ``code`` that the API uses as its ``error`` field. Messages are written for
people: they say what went wrong and, where possible, what to do. They never include a Python
traceback, so they are safe to show to an API client or to hand back to a guest.

One module on purpose, whatever its length: one hierarchy with every ``code`` in one place, so a
new code is checked against all the others at a glance and no layer keeps errors of its own.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any


def error_body(code: str, detail: str, problems: list[Any] | None = None, **extra: Any) -> dict[str, Any]:
    """The API's error shape, ``{"error", "detail", "problems", ...}``: here, not in ``api/``, so a
    view outside the API (the log pages) answers in it without importing DRF."""
    return {"error": code, "detail": detail, "problems": problems or [], **extra}


class PluginError(Exception):
    """Base class: something about a plugin went wrong."""

    code = "plugin_error"

    def __init__(self, message: str, *, plugin: str | None = None) -> None:
        self.message = message
        self.plugin = plugin
        super().__init__(f"[{plugin}] {message}" if plugin else message)

    def as_dict(self) -> dict[str, Any]:
        """The API's error shape: ``{"error", "detail", "problems"}``."""
        return error_body(self.code, self.message)


# --- runtime (layer 1) -----------------------------------------------------------------------


class InvalidLimits(PluginError, ValueError):
    """A ``Limits`` value is out of range (zero, negative, hard below soft, too much memory)."""

    code = "invalid_limits"


class PluginLoadError(PluginError):
    """The module cannot be loaded: bad bytes, a missing export, a forbidden import, or memory
    over the cap."""

    code = "load_error"


class CompileLimitExceeded(PluginLoadError):
    """The module is over a compile cap (its size or its number of functions) or compiling it
    overran the CPU time or memory the compiler process may use."""

    code = "compile_limit"


class BlobStorageUnavailable(PluginLoadError):
    """The blob store (Django storage: a disk, S3, ...) did not answer or refused the operation:
    a network error or an outage, not a fault of the plugin. The API answers 503."""

    code = "storage_unavailable"


class PluginTrap(PluginError):
    """The guest trapped: an explicit ``gn_panic``, a wasm trap, running out of fuel, a deadline."""

    code = "trap"

    def __init__(self, message: str, *, plugin: str | None = None, guest_message: str | None = None,
                 frames: Sequence[str] = ()) -> None:
        super().__init__(message, plugin=plugin)
        self.guest_message = guest_message
        self.frames = list(frames)


class PluginTimeout(PluginTrap):
    """The call overran its hard wall-clock deadline."""

    code = "timeout"


class ReentrantHostCall(PluginTrap):
    """The guest called a host import from inside ``gn_alloc``/``gn_free`` while the host was placing a
    result or a payload (ABI.md: host calls are not re-entrant); the call ends as a trap so a guest
    can never make the host recurse."""

    code = "reentrant_host_call"


class HookError(PluginError):
    """The guest returned one of ABI.md's negative statuses, or a result the host cannot accept.

    ``status`` is one of ``error``, ``out_of_memory``, ``bad_payload``, ``unknown_hook``,
    ``bad_result``.
    """

    code = "hook_error"

    def __init__(self, message: str, *, status: str, plugin: str | None = None) -> None:
        super().__init__(message, plugin=plugin)
        self.status = status

    def as_dict(self) -> dict[str, Any]:
        data = super().as_dict()
        data["status"] = self.status
        return data


class BadPluginMarkup(PluginError):
    """A plugin's structured page output (``title``, ``meta``, ``link``, ``jsonld``, ``html``) has a
    shape or value the host will not render (a ``javascript:`` href, an unknown ``rel``, ...)."""

    code = "bad_markup"


class PayloadTooLarge(PluginError):
    """A payload is over the input cap; refused before any guest call."""

    code = "payload_too_large"


class InvalidPayload(PluginError, TypeError):
    """A value handed to a plugin cannot be encoded as JSON; refused before any guest call."""

    code = "invalid_payload"


class CapabilityDenied(PluginError):
    """The plugin called a host function whose capability it has not been granted."""

    code = "capability_denied"

    def __init__(self, message: str, *, capability: str, plugin: str | None = None) -> None:
        super().__init__(message, plugin=plugin)
        self.capability = capability


class PoolTimeout(PluginError):
    """No instance became free within the checkout timeout."""

    code = "pool_timeout"


class PluginClosed(PluginError):
    """The plugin (or its runtime) was closed; it takes no new calls."""

    code = "plugin_closed"


# --- data (layer 2) ---------------------------------------------------------------------------


class BundleError(PluginError):
    """The ``.gnplugin`` file is not an acceptable bundle (not a zip, too big, bad entries, ...)."""

    code = "bad_bundle"


class ManifestError(PluginError):
    """The manifest fails the schema. ``problems`` lists *every* problem with its JSON path."""

    code = "bad_manifest"

    def __init__(self, problems: Iterable[tuple[str, str]] | str, *, plugin: str | None = None) -> None:
        if isinstance(problems, str):
            problems = [("$", problems)]
        self.problems: list[tuple[str, str]] = list(problems)
        lines = "; ".join(f"{path}: {text}" for path, text in self.problems)
        count = len(self.problems)
        super().__init__(f"manifest has {count} problem{'s' if count != 1 else ''}: {lines}",
                         plugin=plugin)

    def as_dict(self) -> dict[str, Any]:
        data = super().as_dict()
        data["problems"] = [{"path": path, "message": text} for path, text in self.problems]
        return data


class SignatureError(PluginError):
    """The bundle's signature is missing, invalid, or made by a key this site does not trust."""

    code = "bad_signature"

    def __init__(self, message: str, *, plugin: str | None = None, fingerprint: str | None = None) -> None:
        super().__init__(message, plugin=plugin)
        self.fingerprint = fingerprint


class UnknownCapability(PluginError):
    """A grant or a registration names a capability the registry does not know."""

    code = "unknown_capability"


class HookDeclarationError(PluginError, ValueError):
    """A site's hook catalogue entry is invalid: an unknown kind, a malformed argument, or a name
    already declared with the other kind (an action cannot also be a filter)."""

    code = "bad_hook_declaration"


class RequestTooLarge(PluginError):
    """A request body is over ``MAX_REQUEST_BYTES``. Raised before the body is read when its length is
    declared, or as soon as a streamed (chunked) body passes the cap, so memory never holds more."""

    code = "request_too_large"

    def __init__(self, *, limit: int, declared: int | None = None) -> None:
        if declared is None:
            message = f"The request body is over the limit of {limit} bytes."
        else:
            message = f"The request body is {declared} bytes; the limit is {limit} bytes."
        super().__init__(message)
        self.limit = limit
        self.declared = declared


class DatabaseUnavailable(PluginError):
    """The site's database cannot be reached (restarting, failing over): the request did not
    happen and may be sent again after ``Retry-After`` seconds. Answered with a 503 by
    ``middleware.DatabaseUnavailableMiddleware`` and the API's exception handler."""

    code = "database_unavailable"

    def __init__(self) -> None:
        super().__init__("The database is unavailable for a moment (restarting or failing over); "
                         "nothing was changed. Try again shortly.")


# --- lifecycle (layer 3) ----------------------------------------------------------------------


class LifecycleError(PluginError):
    """A lifecycle operation cannot be done in the plugin's current state."""

    code = "lifecycle_error"


class InvalidSettings(LifecycleError):
    """Plugin settings the plugin's schema refuses: values sent to be saved, or values stored for an
    older version that the running one does not accept (which blocks activation until fixed).
    ``problems`` lists every ``(setting name, sentence)``, so a form can show each at its field."""

    code = "invalid_settings"

    def __init__(self, message: str, *, problems: Iterable[tuple[str, str]],
                 plugin: str | None = None) -> None:
        self.problems: list[tuple[str, str]] = list(problems)
        lines = "; ".join(f"{key}: {text}" for key, text in self.problems)
        super().__init__(f"{message}: {lines}" if lines else message, plugin=plugin)

    def as_dict(self) -> dict[str, Any]:
        data = super().as_dict()
        data["problems"] = [{"field": key, "message": text} for key, text in self.problems]
        return data


class PluginNotFound(LifecycleError):
    code = "not_found"


class PluginExists(LifecycleError):
    code = "plugin_exists"


class VersionConflict(LifecycleError):
    """Same slug and version with different bytes: versions are immutable."""

    code = "version_conflict"


class DevInstallRefused(LifecycleError):
    """A dev build may not replace this plugin: it has versions installed from bundles (production)."""

    code = "dev_install_refused"


class NoOlderVersion(LifecycleError):
    """Rollback without a version asked for, but nothing older is installed."""

    code = "no_older_version"


class RolloutError(LifecycleError):
    """A rollout change the plugin's state does not allow: starting one on a plugin already active
    for everyone, promoting or rolling back when none runs."""

    code = "rollout_error"


class InvalidRollout(LifecycleError):
    """A rollout asked for with a mode or a percentage that does not exist."""

    code = "invalid_rollout"


class KeyNotFound(LifecycleError):
    """No publisher key (or more than one) matches a fingerprint prefix."""

    code = "key_not_found"


class ConsentRequired(LifecycleError):
    """Required capabilities have not been granted. ``missing`` lists them."""

    code = "consent_required"

    def __init__(self, message: str, *, missing: Iterable[str], plugin: str | None = None) -> None:
        super().__init__(message, plugin=plugin)
        self.missing = sorted(missing)

    def as_dict(self) -> dict[str, Any]:
        data = super().as_dict()
        data["problems"] = [{"capability": name} for name in self.missing]
        data["missing"] = self.missing
        return data


class IncompatiblePlugin(LifecycleError):
    """The version needs something this site does not offer (an ABI version, a registered capability,
    a host version, a module import the runtime links): refused before anything is stored or run.
    ``reasons`` lists each as ``{"code", "subject", "message"}`` (codes in ``gonext_plugins.compat``)."""

    code = "incompatible_plugin"

    def __init__(self, message: str, *, reasons: Iterable[dict[str, str]], plugin: str | None = None) -> None:
        self.reasons: list[dict[str, str]] = list(reasons)
        lines = "; ".join(reason["message"] for reason in self.reasons)
        super().__init__(f"{message}: {lines}" if lines else message, plugin=plugin)

    def as_dict(self) -> dict[str, Any]:
        data = super().as_dict()
        data["problems"] = list(self.reasons)
        return data


class PublisherChanged(ConsentRequired):
    """An upgrade is signed by another publisher key than the running version: whoever holds that
    key now decides what runs, so the admin must accept the new publisher explicitly."""

    code = "publisher_changed"

    def __init__(self, message: str, *, was: str, now: str, plugin: str | None = None) -> None:
        super().__init__(message, missing=(), plugin=plugin)
        self.was = was
        self.now = now

    def as_dict(self) -> dict[str, Any]:
        data = super().as_dict()
        data["problems"] = [{"publisher_was": self.was, "publisher_now": self.now}]
        return data


# --- background jobs (layer 4) ---------------------------------------------------------------


class JobError(PluginError):
    """A job cannot be queued (site code gets it raised; a plugin's ``jobs.enqueue`` gets -1)."""

    code = "job_error"


class UnknownJob(JobError):
    """The plugin's running version does not declare a job by that name."""

    code = "unknown_job"


class PluginInactive(JobError):
    """The plugin is installed but not active, so its jobs cannot be queued."""

    code = "plugin_inactive"


class JobsNotConfigured(JobError):
    """The site's default Tasks backend has no ``plugin`` queue (system check E006 says how to add
    it): plugin jobs cannot be queued until it does."""

    code = "jobs_not_configured"


class JobQuotaExceeded(JobError):
    """Queuing the job would put the plugin over JOB_MAX_QUEUED unfinished jobs or
    JOB_MAX_QUEUED_BYTES of their payloads: one page view must not be able to fill the queue."""

    code = "job_quota_exceeded"


class JobQueueUnavailable(JobError):
    """A Tasks backend outside the database (RQ on Redis) refused the job's task when the record
    committed: the record is marked failed (``queue_unavailable``), never left queued with no task."""

    code = "job_queue_unavailable"


# --- built-in host functions (layer 4) ----------------------------------------------------------


class HostFunctionError(PluginError):
    """A built-in host function refused a call; the guest sees -1 and the plugin's log says why."""

    code = "host_function_error"


class BadHostCallPayload(HostFunctionError):
    """The payload is JSON but not the shape the function takes; the guest sees -3 (bad payload)."""

    code = "bad_host_call_payload"


class MalformedHostCallPayload(BadHostCallPayload):
    """The payload is not an object with exactly the function's fields (one missing, one unknown):
    the guest sees -3, "bad payload" (ABI.md), not -1, since the call itself is malformed."""

    code = "malformed_host_call_payload"


class KVQuotaExceeded(HostFunctionError):
    """A ``kv.set``, ``kv.incr`` or ``kv.cas`` would go over KV_MAX_KEYS, KV_MAX_VALUE_BYTES or
    KV_MAX_TOTAL_BYTES."""

    code = "kv_quota_exceeded"


class FetchError(HostFunctionError):
    """``http.fetch`` failed: network error, TLS error, bad response."""

    code = "http_fetch_error"


class FetchDenied(FetchError):
    """``http.fetch`` refused the request before sending it (scheme, host, port, address, redirect)."""

    code = "http_fetch_denied"


class FetchTimeout(FetchError):
    """``http.fetch`` ran out of its budget (HTTP_TIMEOUT, or what is left of the guest call)."""

    code = "http_fetch_timeout"


class FetchBusy(FetchError):
    """``http.fetch`` refused the request because too many of this plugin's (or the process's) name
    lookups are still running: lookups that outlived their fetch's budget are left to finish, and
    their number is bounded so that a nameserver that never answers cannot pile up threads."""

    code = "http_fetch_busy"


class ResponseTooLarge(FetchError):
    """The response body is over HTTP_MAX_RESPONSE_BYTES; nothing of it is handed to the guest."""

    code = "http_response_too_large"


# --- signing keys (layer 2, added with the bundle format) ---------------------------------------


class KeyFileError(PluginError):
    """A publisher key file cannot be read, is inconsistent, or would overwrite an existing file."""

    code = "bad_key_file"


class BundleTooLarge(BundleError):
    """The bundle is over a size cap (packed, unpacked, or compression ratio)."""

    code = "bundle_too_large"


class SignatureMissing(SignatureError):
    """The bundle is unsigned and this site requires signatures (dev mode is off)."""

    code = "unsigned"


class UntrustedKey(SignatureError):
    """The signature is valid but made by a key this site does not know or does not trust."""

    code = "untrusted_key"


class RevokedKey(SignatureError):
    """The signature was made by a key this site has revoked."""

    code = "revoked_key"


# --- developer tools ----------------------------------------------------------------------------


class BuildError(PluginError):
    """Compiling a plugin from source failed, or the compiler is missing. ``stderr`` holds the
    compiler's output and ``command`` the command line that was run (empty when none ran)."""

    code = "build_error"

    def __init__(self, message: str, *, stderr: str = "", command: Sequence[str] = (),
                 plugin: str | None = None) -> None:
        super().__init__(message, plugin=plugin)
        self.stderr = stderr
        self.command = list(command)


class ToolchainMissing(BuildError):
    """The language's compiler (or its wasm target) is not installed; ``hint`` says how to get it."""

    code = "toolchain_missing"

    def __init__(self, message: str, *, hint: str, command: list[str] | None = None) -> None:
        super().__init__(f"{message}; {hint}", command=command or [])
        self.hint = hint


class LanguageError(BuildError):
    """The project's language cannot be told from its files (or ``--lang`` names no language)."""

    code = "language_error"


class AmbiguousLanguage(LanguageError):
    """Markers of more than one language; ``found`` maps each language to the files seen."""

    code = "ambiguous_language"

    def __init__(self, message: str, *, found: dict[str, list[str]]) -> None:
        super().__init__(message)
        self.found = found


class UnknownLanguage(LanguageError):
    """No marker at all."""

    code = "unknown_language"


class ScaffoldError(PluginError):
    """The target exists and is not empty, the slug is not valid, or the language has no template."""

    code = "scaffold_error"


class UploadError(PluginError):
    """The upload failed: the site refused it (``status``, ``error``, ``detail``, ``problems`` from the
    API's error shape) or could not be reached (``status`` None)."""

    code = "upload_error"

    def __init__(self, message: str, *, status: int | None = None, error: str | None = None,
                 detail: str | None = None, problems: list[Any] | None = None, body: str = "") -> None:
        super().__init__(message)
        self.status = status
        self.error = error or self.code
        self.detail = detail or message
        self.problems = problems or []
        self.body = body
        if error:
            self.code = error  # the server's machine-readable code

    def as_dict(self) -> dict[str, Any]:
        return {"error": self.error, "detail": self.detail, "problems": self.problems}


class SourceMapError(PluginError):
    """The source map is not a valid Source Map v3 (bad JSON, bad VLQ, an index out of range), or
    the wasm module it belongs to cannot be read."""

    code = "bad_source_map"


# --- interfaces ---------------------------------------------------------------------------------


class PendingError(PluginError):
    """A held upload (between the admin dialog's two steps) cannot be used: its token expired or is
    unknown, or the file is gone or changed; ``message`` says what to do."""

    code = "upload_expired"


# --- the test harness (gonext_plugins.testing, manage.py plugin run) -----------------------------


class FixtureError(PluginError):
    """A fixture or a harness input is not usable: not JSON, an unknown field, a hook without its
    kind, a grant the manifest does not ask for; ``message`` names the field."""

    code = "bad_fixture"


class NotBuilt(BuildError):
    """A project directory has no build output to run yet; ``message`` says how to build it."""

    code = "not_built"


# --- previews (issue #20) ----------------------------------------------------------------------------


class PreviewError(PluginError):
    """A preview cannot run: nothing to preview, or the version named is not installed."""

    code = "preview_error"


class InvalidPreviewPath(PreviewError):
    """The page to preview is not a path of this site that a visitor could open: a scheme or host,
    a path not starting with ``/``, or one of the admin's or this app's own URLs."""

    code = "bad_preview_path"
