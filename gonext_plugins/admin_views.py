"""The admin's plugin views: the two-step install and upgrade dialogs, the plugin page's actions,
and the pending-upload store between the two steps.

Why two steps with a store in between: an admin must see what a bundle asks for before anything
is written, and the bytes installed must be exactly the bytes reviewed. The uploaded file is kept
in the plugin storage under a random name; the form carries only a token signed with the site's
``SECRET_KEY`` naming that file, its sha256, the user and the purpose. On confirm the file is read
back, its hash compared, and the bundle verified again from scratch (a key may have been revoked
in the meantime). Tokens and files expire after an hour.

Every change goes through ``lifecycle``; these views parse, check permissions and render.
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from django.contrib import messages
from django.core import signing
from django.core.exceptions import PermissionDenied
from django.core.files.base import ContentFile
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import get_object_or_404
from django.template.response import TemplateResponse
from django.urls import reverse
from django.utils import timezone
from django.utils.html import format_html

from . import bundle as bundle_module
from . import capabilities, lifecycle, netpolicy
from . import permissions as policy
from .errors import (
    ConsentRequired,
    LifecycleError,
    ManifestError,
    PluginError,
    PublisherChanged,
    RevokedKey,
    UntrustedKey,
)
from .forms import ConfirmForm, TrustKeyForm, UninstallForm, UploadBundleForm
from .lifecycle import preflight
from .manifest import Manifest, version_key
from .models import (
    AuditEvent,
    CapabilityGrant,
    Plugin,
    PluginKV,
    PluginState,
    PluginVersion,
    PublisherKey,
)
from .registry import host_limits, plugin_limits
from .storage import get_storage

if TYPE_CHECKING:
    from .bundle import Bundle

PENDING_PREFIX = "gonext_plugins/pending"
PENDING_MAX_AGE = 3600  # seconds an uploaded bundle waits for the admin's decision
PENDING_SALT = "gonext_plugins.admin.pending"


# --- the pending-upload store ----------------------------------------------------------------


def sentence(message: str) -> str:
    """An error message as a sentence: capitalised, unless it starts with a name (``plugin.wasm``)."""
    first = message.split(" ", 1)[0]
    return message if "." in first or "_" in first else message[:1].upper() + message[1:]


class PendingError(Exception):
    """The token or the held file cannot be used; ``message`` says what to do."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


def _sweep_pending() -> None:
    """Delete held uploads older than the token lifetime (nobody can confirm them any more)."""
    storage = get_storage()
    cutoff = timezone.now() - timedelta(seconds=PENDING_MAX_AGE)
    try:
        names = storage.listdir(PENDING_PREFIX)[1]
    except (FileNotFoundError, NotImplementedError, OSError):
        return
    for name in names:
        path = f"{PENDING_PREFIX}/{name}"
        try:
            if storage.get_modified_time(path) < cutoff:
                storage.delete(path)
        except (NotImplementedError, OSError):
            continue


def hold_upload(raw: bytes, user: Any, purpose: str) -> str:
    """Keep ``raw`` until the admin confirms; return the signed token that names it."""
    _sweep_pending()
    storage = get_storage()
    name = storage.save(f"{PENDING_PREFIX}/{secrets.token_hex(16)}.gnplugin", ContentFile(raw))
    return signing.dumps(
        {"n": name, "h": hashlib.sha256(raw).hexdigest(), "u": user.pk, "p": purpose}, salt=PENDING_SALT
    )


def _token_data(token: str, user: Any, purpose: str) -> dict[str, Any]:
    try:
        data = signing.loads(token, salt=PENDING_SALT, max_age=PENDING_MAX_AGE)
    except signing.SignatureExpired:
        raise PendingError("This upload has expired: uploads wait an hour for a decision. "
                           "Upload the file again.")
    except signing.BadSignature:
        raise PendingError("This upload is unknown. Upload the file again.")
    name = str(data.get("n", ""))
    if (data.get("u") != user.pk or data.get("p") != purpose
            or not name.startswith(PENDING_PREFIX + "/") or ".." in name):
        raise PendingError("This upload is unknown. Upload the file again.")
    return data


def fetch_upload(token: str, user: Any, purpose: str) -> bytes:
    """The held bytes, only if they still hash to what was reviewed."""
    data = _token_data(token, user, purpose)
    storage = get_storage()
    try:
        with storage.open(data["n"], "rb") as handle:
            raw = handle.read()
    except (FileNotFoundError, OSError):
        raise PendingError("This upload is no longer on the server (it expired or was already used). "
                           "Upload the file again.")
    if hashlib.sha256(raw).hexdigest() != data["h"]:
        discard_upload(token, user, purpose)
        raise PendingError("The uploaded file changed on the server after you reviewed it, so it was "
                           "discarded and nothing was installed. Upload the file again.")
    return raw


def discard_upload(token: str, user: Any, purpose: str) -> None:
    try:
        name = _token_data(token, user, purpose)["n"]
    except PendingError:
        return
    storage = get_storage()
    if storage.exists(name):
        storage.delete(name)


# --- describing a bundle ----------------------------------------------------------------------


@dataclass(frozen=True)
class CapabilityRow:
    """One capability line of a dialog."""

    name: str
    description: str
    risk: str
    required: bool
    granted: bool = False  # already granted (upgrade)
    new: bool = False  # not asked for by the running version (upgrade)

    @property
    def locked(self) -> bool:
        """Shown ticked and unchangeable: required at install, or already granted on upgrade."""
        return self.granted or (self.required and not self.new)


def bundle_error_lines(exc: PluginError) -> tuple[str, list[tuple[str, str]]]:
    """A plain sentence for a refused upload, and the manifest problems (path, text) if any."""
    if isinstance(exc, ManifestError):
        count = len(exc.problems)
        return (f"The plugin's manifest has {count} problem{'s' if count != 1 else ''}; the publisher "
                f"must fix {'it' if count == 1 else 'them'}:", exc.problems)
    if isinstance(exc, UntrustedKey):
        return (f"This bundle is signed by an untrusted key: {exc.fingerprint}. If you trust this "
                "publisher, add their key under Trusted publisher keys, then upload it again.", [])
    if isinstance(exc, RevokedKey):
        return (f"This bundle is signed by a revoked key: {exc.fingerprint}. Do not install it; ask the "
                "publisher for a bundle signed with their new key.", [])
    return (sentence(exc.message), [])


def _limit_rows(manifest: Manifest) -> list[dict[str, Any]]:
    host = host_limits()
    effective = plugin_limits(manifest, host)
    asked = manifest.limits

    def pages(value: int | None) -> str:
        return f"{value} pages ({value * 64 // 1024 if value >= 16 else value * 64} " \
               f"{'MiB' if value >= 16 else 'KiB'})" if value else ""

    return [
        {"name": "Memory", "asked": pages(asked.memory_pages), "cap": pages(host.memory_pages),
         "effective": pages(effective.memory_pages)},
        {"name": "Fuel per call", "asked": f"{asked.fuel:,}" if asked.fuel else "",
         "cap": f"{host.fuel:,}" if host.fuel else "unlimited",
         "effective": f"{effective.fuel:,}" if effective.fuel else "unlimited"},
        {"name": "Time per call", "asked": f"{asked.timeout_ms:,} ms" if asked.timeout_ms else "",
         "cap": f"{host.hard_timeout_ms:,} ms", "effective": f"{effective.hard_timeout_ms:,} ms"},
    ]


def describe_bundle(bundle: Bundle) -> dict[str, Any]:
    """Everything the dialog shows about a verified bundle, whatever the operation."""
    manifest = bundle.manifest
    status = bundle.signature
    key = PublisherKey.objects.filter(fingerprint=status.fingerprint).first() if status.fingerprint else None
    hosts = manifest.allowed_hosts if "http.fetch" in manifest.all_capabilities else ()
    return {
        "manifest": manifest,
        "signature": status,
        "publisher_key": key,
        "bundle_sha256": bundle.bundle_sha256,
        "wasm_sha256": bundle.wasm_sha256,
        "size": bundle.size,
        "hooks": manifest.hooks,
        "jobs": manifest.jobs,
        "limits": _limit_rows(manifest),
        "allowed_hosts": hosts,
        # IP and localhost hosts only install where the site opted in; flagged because they reach
        # the site's own network, not a public service.
        "internal_hosts": [host for host in hosts if netpolicy.is_ip_host(host.partition(":")[0])],
    }


def install_capabilities(manifest: Manifest) -> list[CapabilityRow]:
    required = set(manifest.capabilities)
    rows = [CapabilityRow(c.name, c.description, c.risk, c.name in required)
            for c in capabilities.describe(manifest.all_capabilities)]
    return sorted(rows, key=lambda row: (not row.required, row.name))


def upgrade_capabilities(plugin: Plugin, manifest: Manifest) -> tuple[list[CapabilityRow], list[Any]]:
    """The new version's capabilities marked against what runs now, and the dropped ones. Only a
    grant the running version uses counts as granted: one kept for an older version is asked again."""
    old = lifecycle.manifest_of(plugin.active_version) if plugin.active_version else None
    old_caps = set(old.all_capabilities) if old else set()
    granted = lifecycle.granted_capabilities(plugin) & old_caps
    required = set(manifest.capabilities)
    rows = [CapabilityRow(c.name, c.description, c.risk, c.name in required, granted=c.name in granted,
                          new=c.name not in old_caps)
            for c in capabilities.describe(manifest.all_capabilities)]
    rows.sort(key=lambda row: (row.granted, not row.new, not row.required, row.name))
    dropped = capabilities.describe(old_caps - set(manifest.all_capabilities))
    return rows, dropped


def _posted(request: HttpRequest, *, files: bool = False) -> tuple[Any, ...]:
    """A form's data: bound on POST even when nothing was ticked (an empty POST is falsy)."""
    if request.method != "POST":
        return ()
    return (request.POST, request.FILES) if files else (request.POST,)


# --- the views, mixed into PluginAdmin --------------------------------------------------------


class PluginAdminViews:
    """Custom views of ``PluginAdmin`` (see ``admin.PluginAdmin.get_urls``)."""

    admin_site: Any
    model: type[Plugin]

    # helpers

    def _require(self, allowed: bool) -> None:
        """403 unless the permission policy allowed it (the caller asks the ``can_*`` function)."""
        if not allowed:
            raise PermissionDenied

    def _render(self, request: HttpRequest, template: str, title: str, **context: Any) -> TemplateResponse:
        opts = self.model._meta
        return TemplateResponse(request, template, {
            **self.admin_site.each_context(request), "opts": opts, "app_label": opts.app_label,
            "title": title, "has_view_permission": True, **context,
        })

    def _url(self, name: str, *args: Any) -> str:
        return reverse(f"{self.admin_site.name}:gonext_plugins_plugin_{name}", args=args)

    def _plugin_url(self, plugin: Plugin) -> str:
        return self._url("change", plugin.pk)

    # install

    def install_upload_view(self, request: HttpRequest) -> HttpResponse:
        """Step one: upload and verify. Nothing is written but the held file."""
        self._require(policy.can_start_install(request.user))
        return self._upload(request, purpose="install", plugin=None)

    def upgrade_upload_view(self, request: HttpRequest, object_id: int) -> HttpResponse:
        self._require(policy.can_upgrade(request.user))
        plugin = get_object_or_404(Plugin, pk=object_id)
        return self._upload(request, purpose=f"upgrade:{plugin.slug}", plugin=plugin)

    def _upload(self, request: HttpRequest, purpose: str, plugin: Plugin | None) -> HttpResponse:
        form = UploadBundleForm(*_posted(request, files=True))
        error, problems = "", []
        if request.method == "POST" and form.is_valid():
            raw = form.read_bytes()
            try:
                bundle = bundle_module.read(raw)
                self._check_target(bundle, plugin)
            except PluginError as exc:
                error, problems = bundle_error_lines(exc)
            else:
                token = hold_upload(raw, request.user, purpose)
                if plugin is None:
                    return HttpResponseRedirect(self._url("install_confirm", token))
                return HttpResponseRedirect(self._url("upgrade_confirm", plugin.pk, token))
        title = f"Upgrade {plugin.name}" if plugin else "Install a plugin"
        return self._render(request, "admin/gonext_plugins/plugin/upload.html", title, form=form,
                            error=error, problems=problems, plugin=plugin, original=plugin,
                            keys_url=reverse(f"{self.admin_site.name}:gonext_plugins_publisherkey_changelist"))

    def _check_target(self, bundle: Bundle, plugin: Plugin | None) -> None:
        """Refuse at upload what the confirm would refuse anyway for this target (the rules of
        ``lifecycle.preflight``), so the admin is not asked to review a bundle that cannot be
        installed."""
        if plugin is None:
            preflight.check_install(bundle.manifest.slug, hint="open it and use Upgrade instead")
            return
        same = preflight.check_upgrade(plugin, bundle, hint="use a version's Roll back button to go back")
        if same is not None:
            raise LifecycleError(f"version {same.version} is already installed with these exact "
                                 "contents; nothing to upgrade", plugin=plugin.slug)

    def _reread(self, request: HttpRequest, token: str, purpose: str) -> Bundle:
        """The held bundle, hash-checked and verified again from scratch."""
        return bundle_module.read(fetch_upload(token, request.user, purpose))

    def install_confirm_view(self, request: HttpRequest, token: str) -> HttpResponse:
        """Step two: the dialog (GET) and the decision (POST)."""
        self._require(policy.can_start_install(request.user))
        return self._confirm(request, token, purpose="install", plugin=None)

    def upgrade_confirm_view(self, request: HttpRequest, object_id: int, token: str) -> HttpResponse:
        self._require(policy.can_upgrade(request.user))
        plugin = get_object_or_404(Plugin, pk=object_id)
        return self._confirm(request, token, purpose=f"upgrade:{plugin.slug}", plugin=plugin)

    def _confirm(self, request: HttpRequest, token: str, purpose: str, plugin: Plugin | None) -> HttpResponse:
        restart = self._url("upgrade", plugin.pk) if plugin else self._url("install")
        try:
            bundle = self._reread(request, token, purpose)
        except PendingError as exc:
            messages.error(request, exc.message)
            return HttpResponseRedirect(restart)
        except PluginError as exc:  # e.g. the key was revoked since the upload
            discard_upload(token, request.user, purpose)
            messages.error(request, bundle_error_lines(exc)[0])
            return HttpResponseRedirect(restart)
        manifest = bundle.manifest
        info = describe_bundle(bundle)
        if plugin is None:
            rows, dropped, publisher_change = install_capabilities(manifest), [], None
        else:
            rows, dropped = upgrade_capabilities(plugin, manifest)
            publisher_change = lifecycle.publisher_change(plugin, info["publisher_key"])
        form = ConfirmForm(*_posted(request), capability_names=list(manifest.all_capabilities),
                           host_names=list(info["allowed_hosts"]))
        error, missing = "", []
        if request.method == "POST" and "_cancel" in request.POST:
            discard_upload(token, request.user, purpose)
            messages.info(request, "Cancelled; nothing was installed.")
            return HttpResponseRedirect(self._plugin_url(plugin) if plugin else self._url("changelist"))
        if request.method == "POST" and form.is_valid():
            granted = form.cleaned_data["capabilities"]
            hosts = form.cleaned_data["hosts"] if info["allowed_hosts"] else None
            activate = plugin is None and "_activate" in request.POST
            if plugin is None:  # activating and granting need their own permissions, not install's
                self._require(policy.can_install(request.user, activate=activate, grants=granted))
            else:
                self._require(policy.can_upgrade(request.user, plugin, granted, hosts))
            try:
                if plugin is None:
                    result = lifecycle.install(bundle, granted, request.user, activate=activate, hosts=hosts)
                    done = f"Installed {manifest.name} {manifest.version}" + (" and activated it"
                                                                               if activate else "")
                else:
                    result = lifecycle.upgrade(
                        plugin, bundle, granted, request.user, hosts=hosts,
                        accept_new_publisher=form.cleaned_data["accept_new_publisher"])
                    done = (f"Upgraded {manifest.name} to {manifest.version}" if result.changed
                            else f"{manifest.name} {manifest.version} was already installed; nothing changed")
            except PublisherChanged as exc:
                error = (f"{sentence(exc.message)} Tick \"I accept the new publisher\" if you trust "
                         "whoever holds that key with this plugin.")
            except ConsentRequired as exc:
                error, missing = ("Tick every capability marked required to go on; the plugin cannot "
                                  f"run without: {', '.join(exc.missing)}."), exc.missing
            except PluginError as exc:
                error = sentence(exc.message)
            else:
                discard_upload(token, request.user, purpose)
                messages.success(request, done + ".")
                return HttpResponseRedirect(self._plugin_url(result.plugin))
        elif request.method == "POST":
            error = "Only the capabilities this plugin asks for can be granted (and only the hosts it lists)."
        if request.method == "POST":
            chosen = set(request.POST.getlist("capabilities"))
            chosen_hosts = set(request.POST.getlist("hosts"))
        else:  # defaults: required ones ticked at install; nothing new pre-ticked on upgrade
            chosen = {row.name for row in rows if row.locked}
            chosen_hosts = set(info["allowed_hosts"])
        current = plugin.active_version if plugin else None
        title = (f"Upgrade {plugin.name}: review what {manifest.version} asks for" if plugin
                 else f"Install {manifest.name}?")
        return self._render(
            request, "admin/gonext_plugins/plugin/dialog.html", title, plugin=plugin, original=plugin,
            upgrade=plugin is not None, current_version=current, rows=rows, dropped=dropped,
            high_risk=[row for row in rows if row.risk == "high" and not row.granted], chosen=chosen,
            chosen_hosts=chosen_hosts, error=error, missing=missing, form=form, restart_url=restart,
            publisher_change=publisher_change,
            downgrade=bool(current and version_key(manifest.version) <= version_key(current.version)),
            can_activate=policy.can_activate(request.user), can_grant=policy.can_grant(request.user),
            **info,
        )

    # the plugin page's actions

    def activate_view(self, request: HttpRequest, object_id: int) -> HttpResponse:
        return self._state_action(request, object_id, activate=True)

    def deactivate_view(self, request: HttpRequest, object_id: int) -> HttpResponse:
        return self._state_action(request, object_id, activate=False)

    def _state_action(self, request: HttpRequest, object_id: int, *, activate: bool) -> HttpResponse:
        self._require(policy.can_activate(request.user))
        if request.method != "POST":
            return HttpResponseRedirect(self._url("change", object_id))
        plugin = get_object_or_404(Plugin, pk=object_id)
        try:
            result = (lifecycle.activate if activate else lifecycle.deactivate)(plugin, request.user)
        except PluginError as exc:
            messages.error(request, f"{plugin.name} was not activated: {exc.message}")
        else:
            verb = "activated" if activate else "deactivated"
            if result.changed:
                messages.success(request, f"{plugin.name} is {verb}.")
            else:
                messages.info(request, f"{plugin.name} was already {verb}.")
        return HttpResponseRedirect(self._plugin_url(plugin))

    def rollback_view(self, request: HttpRequest, object_id: int) -> HttpResponse:
        self._require(policy.can_rollback(request.user))
        plugin = get_object_or_404(Plugin, pk=object_id)
        if request.method == "POST":
            version = request.POST.get("version") or None
            try:
                result = lifecycle.rollback(plugin, request.user, to_version=version)
            except PluginError as exc:
                messages.error(request, f"No rollback: {exc.message}")
            else:
                if result.changed and result.version is not None:
                    messages.success(request, f"{plugin.name} now runs version {result.version.version}.")
                else:
                    messages.info(request, "That version is already the current one.")
        return HttpResponseRedirect(self._plugin_url(plugin))

    def revoke_grant_view(self, request: HttpRequest, object_id: int, capability: str) -> HttpResponse:
        """A confirmation that says what revoking does, then the revoke."""
        self._require(policy.can_grant(request.user))
        plugin = get_object_or_404(Plugin, pk=object_id)
        grant = get_object_or_404(CapabilityGrant, plugin=plugin, capability=capability)
        required = bool(plugin.active_version
                        and capability in lifecycle.manifest_of(plugin.active_version).capabilities)
        if request.method == "POST":
            try:
                lifecycle.revoke(plugin, capability, request.user)
            except PluginError as exc:
                messages.error(request, exc.message)
            else:
                messages.success(request, f"Revoked {capability} from {plugin.name}." + (
                    " It was required, so the plugin was deactivated."
                    if required and plugin.state == PluginState.ACTIVE else ""))
            return HttpResponseRedirect(self._plugin_url(plugin))
        [described] = capabilities.describe([capability])
        consequences = []
        if required and plugin.state == PluginState.ACTIVE:
            consequences.append(f"The running version requires {capability}, so {plugin.name} will be "
                                "deactivated at once, in every process.")
        elif required:
            consequences.append(f"The current version requires {capability}: {plugin.name} cannot be "
                                "activated again until it is granted.")
        else:
            consequences.append(f"{capability} is optional: {plugin.name} keeps running, and its calls to "
                                "the host functions of this capability are refused from now on.")
        if capability == "hooks.subscribe":
            consequences.append("The plugin's hooks are disconnected: its filters and actions stop running.")
        if grant.hosts:
            consequences.append(f"The hosts it may reach are forgotten: {', '.join(grant.hosts)}.")
        return self._render(
            request, "admin/gonext_plugins/confirm.html", f"Revoke {capability} from {plugin.name}?",
            plugin=plugin, original=plugin, heading=f"Revoke “{capability}” from {plugin.name}?",
            intro=format_html("{} — <em>{}</em> (risk: {})", described.name, described.description,
                              described.risk),
            consequences=consequences, button="Yes, revoke it", danger=True,
            cancel_url=self._plugin_url(plugin),
        )

    def uninstall_view(self, request: HttpRequest, object_id: int) -> HttpResponse:
        """A confirmation listing what will be deleted, then the uninstall."""
        self._require(policy.can_uninstall(request.user))
        plugin = get_object_or_404(Plugin, pk=object_id)
        form = UninstallForm(*_posted(request))
        if request.method == "POST" and form.is_valid():
            keep = form.cleaned_data["keep_data"]
            try:
                lifecycle.uninstall(plugin, request.user, keep_data=keep)
            except PluginError as exc:
                messages.error(request, exc.message)
                return HttpResponseRedirect(self._plugin_url(plugin))
            messages.success(request, f"Uninstalled {plugin.name}." + (" Its stored data was kept."
                                                                        if keep else ""))
            return HttpResponseRedirect(self._url("changelist"))
        versions = sorted(plugin.versions.all(), key=lambda v: version_key(v.version))
        shared = set(PluginVersion.objects.exclude(plugin=plugin)
                     .filter(blob_name__in=[v.blob_name for v in versions])
                     .values_list("blob_name", flat=True))
        blobs = {v.blob_name for v in versions} - shared
        grants = list(plugin.grants.values_list("capability", flat=True))
        kv_rows = PluginKV.objects.filter(plugin_slug=plugin.slug).count()
        consequences = [
            f"{len(versions)} version{'s' if len(versions) != 1 else ''}: "
            f"{', '.join(v.version for v in versions)}, and {len(blobs)} stored wasm "
            f"file{'s' if len(blobs) != 1 else ''}",
            f"its grants: {', '.join(grants) if grants else 'none'}",
            f"{plugin.faults.count()} recorded fault(s)",
            f"{kv_rows} key-value row(s) of its stored data, unless you keep them below",
        ]
        if plugin.state == PluginState.ACTIVE:
            consequences.insert(0, "it stops running in every process at once")
        return self._render(
            request, "admin/gonext_plugins/confirm.html", f"Uninstall {plugin.name}?", plugin=plugin,
            original=plugin, heading=f"Uninstall {plugin.name}?",
            intro="This deletes, and cannot be undone:", consequences=consequences,
            footnote="The audit log of this plugin is kept.", form=form, button="Yes, uninstall it",
            danger=True, cancel_url=self._plugin_url(plugin),
        )


# --- trusted keys -------------------------------------------------------------------------------


class PublisherKeyAdminViews:
    """Adding a key (validated by ``lifecycle.trust_key``) and revoking one with its consequences."""

    admin_site: Any
    model: type[PublisherKey]

    def _render(self, request: HttpRequest, template: str, title: str, **context: Any) -> TemplateResponse:
        opts = self.model._meta
        return TemplateResponse(request, template, {
            **self.admin_site.each_context(request), "opts": opts, "app_label": opts.app_label,
            "title": title, "has_view_permission": True, **context,
        })

    def trust_key_view(self, request: HttpRequest) -> HttpResponse:
        if not policy.can_trust_key(request.user):
            raise PermissionDenied
        form = TrustKeyForm(*_posted(request))
        if request.method == "POST" and form.is_valid():
            try:
                key = lifecycle.trust_key(form.cleaned_data["name"], form.cleaned_data["public_key"],
                                          request.user)
            except PluginError as exc:
                form.add_error("public_key", sentence(exc.message))
            else:
                messages.success(request, f"Bundles signed by {key.name} ({key.fingerprint}) now "
                                          "install here.")
                return HttpResponseRedirect(
                    reverse(f"{self.admin_site.name}:gonext_plugins_publisherkey_changelist"))
        return self._render(request, "admin/gonext_plugins/publisherkey/add.html",
                            "Trust a publisher key", form=form, add=True)

    def revoke_key_view(self, request: HttpRequest, object_id: int) -> HttpResponse:
        if not policy.can_revoke_key(request.user):
            raise PermissionDenied
        key = get_object_or_404(PublisherKey, pk=object_id)
        changelist = reverse(f"{self.admin_site.name}:gonext_plugins_publisherkey_changelist")
        if key.revoked_at is not None:
            messages.info(request, f"{key.name} is already revoked.")
            return HttpResponseRedirect(changelist)
        if request.method == "POST":
            slugs = lifecycle.revoke_key(key, request.user)
            messages.success(request, f"Revoked {key.name}." + (
                f" Deactivated: {', '.join(slugs)}." if slugs else " No active plugin was signed by it."))
            return HttpResponseRedirect(changelist)
        active = Plugin.objects.filter(active_version__publisher_key=key, state=PluginState.ACTIVE)
        others = Plugin.objects.filter(versions__publisher_key=key).exclude(pk__in=active).distinct()
        consequences = [format_html("<strong>{}</strong> ({}) will be deactivated at once, in every "
                                    "process.", p.name, p.slug) for p in active]
        if not active:
            consequences.append("No active plugin runs a version signed by this key.")
        consequences.extend(format_html("{} ({}) has versions signed by this key; it stays as it is, "
                                        "but cannot be reinstalled from them.", p.name, p.slug)
                            for p in others)
        consequences.append("New installs and upgrades signed by this key are refused from now on.")
        consequences.append("A revoked key cannot be trusted again; the publisher needs a new key.")
        return self._render(
            request, "admin/gonext_plugins/confirm.html", f"Revoke {key.name}?", original=key,
            heading=f"Revoke the publisher key {key.name}?",
            intro=format_html("Fingerprint <code>{}</code>", key.fingerprint),
            consequences=consequences, button="Yes, revoke this key", danger=True, cancel_url=changelist,
        )


def recent_audit(plugin: Plugin, limit: int = 50) -> list[AuditEvent]:
    return list(AuditEvent.objects.filter(plugin_slug=plugin.slug).select_related("actor")[:limit])


__all__ = ["PendingError", "PluginAdminViews", "PublisherKeyAdminViews", "fetch_upload", "hold_upload"]
