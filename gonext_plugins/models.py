"""Database state of plugins. Thin on purpose: ``gonext_plugins.lifecycle`` is the only writer of
plugin state, so the rules live in one place and every change is audited."""

from __future__ import annotations

from typing import Any, NoReturn

from django.conf import settings
from django.db import models

from .storable import storable_json, storable_text

# --- columns that hold text a plugin or a client wrote ---------------------------------------------
#
# Each writes what it is given through ``storable``'s rule, on every write path (``save``,
# ``create``, ``bulk_create``, ``QuerySet.update``), so no caller can forget it. They deconstruct as
# the plain Django field: the column is the same, only the value sent to it differs, so they need
# no migration.


class StorableTextField(models.TextField):
    """A ``TextField`` for untrusted text: NUL stored as ``\\x00``, lone surrogates as U+FFFD."""

    def get_prep_value(self, value: Any) -> Any:
        value = super().get_prep_value(value)
        return storable_text(value) if isinstance(value, str) else value

    def deconstruct(self) -> Any:
        name, _, args, kwargs = super().deconstruct()
        return name, "django.db.models.TextField", args, kwargs


class StorableCharField(models.CharField):
    """A ``CharField`` for untrusted text: made storable, then cut to ``max_length`` (escaping a
    NUL lengthens the text, and PostgreSQL refuses an over-long ``varchar``)."""

    def get_prep_value(self, value: Any) -> Any:
        value = super().get_prep_value(value)
        if isinstance(value, str):
            value = storable_text(value)
            if self.max_length is not None:
                value = value[: self.max_length]
        return value

    def deconstruct(self) -> Any:
        name, _, args, kwargs = super().deconstruct()
        return name, "django.db.models.CharField", args, kwargs


class StorableJSONField(models.JSONField):
    """A ``JSONField`` for untrusted JSON: every string in it (keys too) made storable, since
    PostgreSQL's ``jsonb`` refuses ``"\\u0000"`` even where ``text`` would not matter."""

    def get_prep_value(self, value: Any) -> Any:
        return storable_json(super().get_prep_value(value))

    def deconstruct(self) -> Any:
        name, _, args, kwargs = super().deconstruct()
        return name, "django.db.models.JSONField", args, kwargs


class PluginState(models.TextChoices):
    INACTIVE = "inactive", "Inactive"
    ACTIVE = "active", "Active"
    QUARANTINED = "quarantined", "Quarantined"
    PENDING_CONSENT = "pending_consent", "Pending consent"


class Plugin(models.Model):
    """One installed plugin, whatever its versions."""

    slug = models.SlugField(max_length=64, unique=True)
    name = StorableCharField(max_length=200)
    description = StorableTextField(blank=True)
    author = StorableCharField(max_length=200, blank=True)
    homepage = models.URLField(blank=True)
    state = models.CharField(max_length=20, choices=PluginState.choices, default=PluginState.INACTIVE)
    state_reason = StorableCharField(max_length=500, blank=True, help_text="why it is quarantined, etc.")
    active_version = models.ForeignKey(
        "PluginVersion", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    settings = StorableJSONField(default=dict, blank=True,
                                 help_text="values an admin set (lifecycle.settings); defaults not stored")
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["slug"]
        permissions = [
            ("install_plugin", "Can install, upgrade, roll back and uninstall plugins"),
            ("activate_plugin", "Can activate and deactivate plugins"),
            ("grant_capability", "Can grant and revoke plugin capabilities"),
            ("view_plugin_logs", "Can watch plugin logs"),
            ("change_plugin_settings", "Can change plugin settings"),
        ]

    def __str__(self) -> str:
        return self.slug


class PublisherKey(models.Model):
    """An ed25519 public key that may sign bundles. Only trusted, unrevoked keys install."""

    name = models.CharField(max_length=200)
    public_key = models.CharField(max_length=64, unique=True, help_text="base64 of the 32-byte key")
    fingerprint = models.CharField(max_length=64, unique=True, help_text="sha256 hex of the raw key")
    trusted = models.BooleanField(default=True)
    revoked_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return f"{self.name} ({self.fingerprint[:16]})"

    @property
    def usable(self) -> bool:
        return self.trusted and self.revoked_at is None


class PluginVersion(models.Model):
    """One immutable version of a plugin: its manifest and the wasm blob stored under its sha256."""

    plugin = models.ForeignKey(Plugin, on_delete=models.CASCADE, related_name="versions")
    version = models.CharField(max_length=64)
    abi = models.PositiveSmallIntegerField(default=1)
    manifest = models.JSONField()
    wasm_sha256 = models.CharField(max_length=64, db_index=True)
    wasm_size = models.PositiveIntegerField(default=0)
    blob_name = models.CharField(max_length=255, help_text="storage name of the wasm blob")
    bundle_sha256 = models.CharField(max_length=64, blank=True)
    signature = models.TextField(blank=True, help_text="base64 ed25519 signature; empty if unsigned")
    signed = models.BooleanField(default=False)
    publisher_key = models.ForeignKey(
        PublisherKey, null=True, blank=True, on_delete=models.PROTECT, related_name="versions"
    )
    installed_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["plugin", "-installed_at"]
        constraints = [
            models.UniqueConstraint(fields=["plugin", "version"], name="gonext_unique_plugin_version"),
        ]

    def __str__(self) -> str:
        return f"{self.plugin.slug}@{self.version}"


class CapabilityGrant(models.Model):
    """A capability the admin granted to a plugin."""

    plugin = models.ForeignKey(Plugin, on_delete=models.CASCADE, related_name="grants")
    capability = models.CharField(max_length=100)
    granted_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    granted_at = models.DateTimeField(auto_now_add=True)
    requested_by_version = models.ForeignKey(
        PluginVersion, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    hosts = models.JSONField(
        default=list, blank=True, help_text="for http.fetch: the manifest hosts the admin allowed"
    )

    class Meta:
        ordering = ["plugin", "capability"]
        constraints = [
            models.UniqueConstraint(fields=["plugin", "capability"], name="gonext_unique_grant"),
        ]

    def __str__(self) -> str:
        return f"{self.plugin.slug}: {self.capability}"


class AuditEventQuerySet(models.QuerySet):
    def update(self, **kwargs: Any) -> NoReturn:
        raise TypeError("AuditEvent is append-only")

    def delete(self) -> NoReturn:
        raise TypeError("AuditEvent is append-only")


class AuditEvent(models.Model):
    """Append-only record of every change to plugin state: who, what, before and after."""

    actor = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    actor_label = models.CharField(max_length=200, blank=True, help_text="who, when not a user")
    action = models.CharField(max_length=50, db_index=True)
    plugin = models.ForeignKey(Plugin, null=True, blank=True, on_delete=models.SET_NULL, related_name="audit")
    plugin_slug = models.CharField(max_length=64, db_index=True, blank=True)
    version = models.CharField(max_length=64, blank=True)
    details = StorableJSONField(default=dict, blank=True)
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)

    objects = AuditEventQuerySet.as_manager()

    class Meta:
        ordering = ["-created_at", "-id"]

    def __str__(self) -> str:
        return f"{self.created_at:%Y-%m-%d %H:%M:%S} {self.action} {self.plugin_slug}"

    def save(self, *args: Any, **kwargs: Any) -> None:
        if self.pk is not None:
            raise TypeError("AuditEvent is append-only")
        super().save(*args, **kwargs)

    def delete(self, *args: Any, **kwargs: Any) -> NoReturn:
        raise TypeError("AuditEvent is append-only")


class Generation(models.Model):
    """A single row whose number every process polls to learn that plugin state changed."""

    id = models.PositiveSmallIntegerField(primary_key=True, default=1)
    number = models.BigIntegerField(default=0)
    changed_at = models.DateTimeField(auto_now=True)

    def __str__(self) -> str:
        return f"generation {self.number}"


class PluginKV(models.Model):
    """One key of a plugin's private key-value store (the ``kv`` capability)."""

    plugin_slug = models.SlugField(max_length=64, help_text="by slug, so kept data survives an uninstall")
    key = models.CharField(max_length=255)
    value = StorableJSONField()
    size = models.PositiveIntegerField(help_text="bytes of the JSON-encoded value")
    updated_at = models.DateTimeField(auto_now=True)
    expires_at = models.DateTimeField(
        null=True, blank=True, db_index=True,
        help_text="kv.set's ttlSeconds: from then on the key reads as absent (null: never expires)")

    class Meta:
        constraints = [models.UniqueConstraint(fields=["plugin_slug", "key"], name="gonext_unique_kv_key")]

    def __str__(self) -> str:
        return f"{self.plugin_slug}:{self.key}"


class PluginFault(models.Model):
    """A trap, timeout or bad result: shown to the admin and counted for quarantine."""

    plugin = models.ForeignKey(Plugin, on_delete=models.CASCADE, related_name="faults")
    version = models.CharField(max_length=64, blank=True)
    kind = models.CharField(max_length=30)  # trap, timeout, bad_result, load_error, ...
    hook = StorableCharField(max_length=200, blank=True)
    message = StorableTextField(blank=True)
    guest_message = StorableTextField(blank=True)
    report = StorableJSONField(
        null=True, blank=True,
        help_text="the trap report: frames resolved to source lines through the module's source map",
    )
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)

    class Meta:
        ordering = ["-created_at", "-id"]

    def __str__(self) -> str:
        return f"{self.plugin.slug} {self.kind} {self.created_at:%H:%M:%S}"


class PluginLogEntry(models.Model):
    """One line of a plugin's log (``gn_log`` or a host event). A bounded backlog: the log writer
    keeps the last ``LOG_BACKLOG`` lines per plugin; the live page streams the rest."""

    time = models.DateTimeField()
    plugin = models.SlugField(max_length=64, db_index=False, help_text="by slug: logs outlive an uninstall")
    version = models.CharField(max_length=64, blank=True)
    level = models.PositiveSmallIntegerField(default=1, help_text="0 debug, 1 info, 2 warning, 3 error")
    message = StorableTextField(blank=True)
    source = models.CharField(max_length=10, default="guest", help_text="guest or host")
    dropped = models.PositiveIntegerField(default=0, help_text="lines this report line says were dropped")

    class Meta:
        ordering = ["id"]
        indexes = [models.Index(fields=["plugin", "id"], name="gonext_log_plugin_id")]
        verbose_name_plural = "plugin log entries"

    def __str__(self) -> str:
        return f"{self.plugin} {self.time:%H:%M:%S} {self.message[:50]}"

    def as_record(self) -> dict[str, object]:
        """The wire shape the consumer and the page use."""
        record: dict[str, object] = {
            "id": self.pk, "time": self.time.isoformat(), "plugin": self.plugin, "version": self.version,
            "level": self.level, "message": self.message, "source": self.source,
        }
        if self.dropped:
            record["dropped"] = self.dropped
        return record


class JobStatus(models.TextChoices):
    QUEUED = "queued", "Queued"
    RUNNING = "running", "Running"
    RETRYING = "retrying", "Retrying"  # trapped or timed out; the next attempt is queued
    WAITING = "waiting", "Waiting"  # the plugin is not active here; the next attempt is queued
    SUCCEEDED = "succeeded", "Succeeded"
    FAILED = "failed", "Failed"
    PLUGIN_INACTIVE = "plugin_inactive", "Failed: plugin inactive"  # stayed inactive through every retry
    SKIPPED = "skipped", "Skipped"  # the plugin was uninstalled before the job could run


class PluginJobRun(models.Model):
    """One background job of a plugin, from enqueue to its final outcome.

    ``id`` is the idempotency key the guest sees (the first task's id, or on a queue outside the
    database an id chosen at enqueue); retries are new tasks that
    carry this key, so the row counts attempts across them. Keyed by slug, like logs, so the record
    outlives an uninstall. Written only by ``gonext_plugins.jobs``.
    """

    FINAL = (JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.PLUGIN_INACTIVE, JobStatus.SKIPPED)

    id = models.CharField(max_length=64, primary_key=True, help_text="the idempotency key (task id)")
    plugin_slug = models.SlugField(max_length=64, db_index=False)
    version = models.CharField(max_length=64, blank=True, help_text="the version that last ran it")
    job = models.CharField(max_length=200)
    payload = StorableJSONField(null=True, blank=True)
    payload_bytes = models.PositiveIntegerField(
        default=0, help_text="size of the JSON payload, counted against JOB_MAX_QUEUED_BYTES")
    status = models.CharField(max_length=20, choices=JobStatus.choices, default=JobStatus.QUEUED)
    attempts = models.PositiveIntegerField(default=0)
    max_retries = models.PositiveSmallIntegerField(default=3)
    duplicates = models.PositiveIntegerField(default=0, help_text="deliveries skipped as duplicates")
    enqueued_by = models.CharField(max_length=20, default="site", help_text="site or plugin")
    task_id = models.CharField(max_length=64, blank=True, help_text="the task carrying the last attempt")
    error_code = models.CharField(max_length=40, blank=True)
    error = StorableTextField(blank=True)
    result = StorableJSONField(null=True, blank=True)
    enqueued_at = models.DateTimeField()
    run_after = models.DateTimeField(null=True, blank=True, help_text="when the next attempt may start")
    started_at = models.DateTimeField(null=True, blank=True, help_text="start of the first attempt")
    last_attempt_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    duration_ms = models.FloatField(null=True, blank=True, help_text="the last attempt's guest call")

    class Meta:
        ordering = ["-enqueued_at", "-id"]
        indexes = [models.Index(fields=["plugin_slug", "-enqueued_at"], name="gonext_job_plugin_time")]
        verbose_name = "plugin job run"

    def __str__(self) -> str:
        return f"{self.plugin_slug} {self.job} {self.id} ({self.status})"

    @property
    def finished(self) -> bool:
        return self.status in self.FINAL


class PluginStatsBucket(models.Model):
    """One process's call figures for one plugin in one minute: the rollup every process writes to
    (``gonext_plugins.stats``), so the admin shows the cluster's figures, not one process's.

    A process overwrites its own row of a minute with its running totals (an idempotent upsert, no
    read-modify-write); readers sum the rows of all processes. ``histogram`` holds call counts per
    latency bucket (``runtime.metrics.LATENCY_BUCKETS`` and +Inf), from which p50/p99 are estimated.
    """

    plugin_slug = models.SlugField(max_length=64, db_index=False)
    minute = models.DateTimeField(help_text="start of the minute (UTC)")
    process = models.CharField(max_length=80, help_text="host:pid:nonce of the writing process")
    calls = models.PositiveBigIntegerField(default=0)
    faults = models.PositiveIntegerField(default=0, help_text="guest calls that trapped")
    time_sum = models.FloatField(default=0.0, help_text="seconds spent in guest calls")
    fuel_sum = models.PositiveBigIntegerField(default=0)
    histogram = models.JSONField(default=list)
    jobs_run = models.PositiveIntegerField(default=0)
    jobs_failed = models.PositiveIntegerField(default=0)
    job_time_sum = models.FloatField(default=0.0, help_text="seconds of time_sum spent in job calls")
    memory_peak = models.PositiveBigIntegerField(
        default=0, help_text="largest linear memory of one instance after a call, in bytes")

    class Meta:
        constraints = [models.UniqueConstraint(fields=["plugin_slug", "minute", "process"],
                                               name="gonext_stats_one_row_per_process_minute")]
        indexes = [models.Index(fields=["minute"], name="gonext_stats_minute")]
        verbose_name = "plugin stats bucket"

    def __str__(self) -> str:
        return f"{self.plugin_slug} {self.minute:%Y-%m-%d %H:%M} {self.process}"


class SiteRequestBucket(models.Model):
    """One process's count of the site's requests in one minute, beside ``PluginStatsBucket``: what
    turns a plugin's hook time into its added time per request (``stats.added_ms_per_request``).

    Written by the same flush, with the same idempotent upsert of running totals."""

    minute = models.DateTimeField(help_text="start of the minute (UTC)")
    process = models.CharField(max_length=80, help_text="host:pid:nonce of the writing process")
    requests = models.PositiveBigIntegerField(default=0)
    time_sum = models.FloatField(default=0.0, help_text="seconds from request_started to request_finished")

    class Meta:
        constraints = [models.UniqueConstraint(fields=["minute", "process"],
                                               name="gonext_requests_one_row_per_process_minute")]
        indexes = [models.Index(fields=["minute"], name="gonext_requests_minute")]
        verbose_name = "site request bucket"

    def __str__(self) -> str:
        return f"{self.minute:%Y-%m-%d %H:%M} {self.process}: {self.requests}"


class RolloutMode(models.TextChoices):
    STAFF = "staff", "Staff only"
    PERCENT = "percent", "A percentage of visitors"


class PluginRollout(models.Model):
    """An activation or an upgrade that is not yet for everyone: the plugin is active, but the requests
    outside its cohort (``gonext_plugins.rollout``) skip its hooks (a new activation) or run
    ``previous_version``'s (an upgrade). Deleted when it is promoted (the plugin then runs for
    everyone) or rolled back (deactivated, or back to ``previous_version``); the audit trail keeps
    its history. Written only by ``lifecycle.rollout``."""

    plugin = models.OneToOneField(Plugin, on_delete=models.CASCADE, related_name="rollout")
    version = models.ForeignKey(PluginVersion, on_delete=models.CASCADE, related_name="+",
                                help_text="the version rolled out")
    previous_version = models.ForeignKey(
        PluginVersion, on_delete=models.CASCADE, related_name="+", null=True, blank=True,
        help_text="an upgrade's rollout: the version the requests outside the cohort keep running "
                  "(empty for a new activation, whose outside requests run nothing)")
    mode = models.CharField(max_length=10, choices=RolloutMode.choices)
    percent = models.PositiveSmallIntegerField(default=0, help_text="share of visitors in percent mode, 1-99")
    started_at = models.DateTimeField(help_text="figures are watched from this minute on")
    started_by = models.CharField(max_length=200, blank=True, help_text="who started it (audit label)")

    class Meta:
        verbose_name = "plugin rollout"

    def __str__(self) -> str:
        return f"{self.plugin_id} {self.mode} {self.percent}"


class RolloutBucket(models.Model):
    """One process's request figures for one plugin in rollout in one minute: the requests that ran
    with the plugin and those that skipped it, with their total time and latency histograms (the
    bounds of ``runtime.metrics.LATENCY_BUCKETS`` and +Inf). Written like ``PluginStatsBucket``: a
    process upserts its own row's running totals; readers sum all processes' rows."""

    plugin_slug = models.SlugField(max_length=64, db_index=False)
    minute = models.DateTimeField(help_text="start of the minute (UTC)")
    process = models.CharField(max_length=80, help_text="host:pid:nonce of the writing process")
    with_requests = models.PositiveBigIntegerField(default=0)
    with_time = models.FloatField(default=0.0, help_text="seconds of the requests that ran the plugin")
    with_histogram = models.JSONField(default=list)
    without_requests = models.PositiveBigIntegerField(default=0)
    without_time = models.FloatField(default=0.0, help_text="seconds of the requests that skipped it")
    without_histogram = models.JSONField(default=list)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["plugin_slug", "minute", "process"],
                                               name="gonext_rollout_one_row_per_process_minute")]
        indexes = [models.Index(fields=["minute"], name="gonext_rollout_minute")]
        verbose_name = "rollout bucket"

    def __str__(self) -> str:
        return f"{self.plugin_slug} {self.minute:%Y-%m-%d %H:%M} {self.process}"
