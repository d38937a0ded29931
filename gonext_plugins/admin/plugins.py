"""The plugin admin's custom views: the two-step install and upgrade dialogs and the plugin page's
actions (activate, deactivate, roll back, revoke a grant, uninstall).

Why two steps: an admin must see what a bundle asks for before anything is written, and the bytes
installed must be exactly the bytes reviewed; :mod:`.staging` holds the upload in between, and the
bundle is verified again from scratch on confirm. Every change goes through ``lifecycle``; these
views parse, ask the permission policy and render (:mod:`.presenters` says what to show).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import orjson
from django.contrib import messages
from django.core.exceptions import PermissionDenied
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import get_object_or_404
from django.urls import reverse
from django.utils.crypto import salted_hmac
from django.utils.html import format_html

from .. import bundle as bundle_module
from .. import capabilities, lifecycle, preview
from .. import permissions as policy
from ..errors import (
    ConsentRequired,
    InvalidSettings,
    LifecycleError,
    PendingError,
    PluginError,
    PublisherChanged,
)
from ..forms import (
    SETTINGS_SEEN_FIELD,
    ConfirmForm,
    PreviewForm,
    UninstallForm,
    UploadBundleForm,
    settings_form,
)
from ..lifecycle import preflight
from ..manifest import version_key
from ..models import CapabilityGrant, Plugin, PluginKV, PluginState, PluginVersion
from ._common import AdminViewsMixin, posted
from .presenters import (
    bundle_error_lines,
    describe_bundle,
    diff_rows,
    install_capabilities,
    sentence,
    upgrade_capabilities,
)
from .rollout import percent_of
from .staging import discard_upload, fetch_upload, hold_upload

if TYPE_CHECKING:
    from ..bundle import Bundle


class PluginAdminViews(AdminViewsMixin):
    """Custom views of ``PluginAdmin`` (see ``admin.PluginAdmin.get_urls``)."""

    admin_site: Any
    model: type[Plugin]

    # helpers

    def _require(self, allowed: bool) -> None:
        """403 unless the permission policy allowed it (the caller asks the ``can_*`` function)."""
        if not allowed:
            raise PermissionDenied

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
        form = UploadBundleForm(*posted(request, files=True))
        error = ""
        problems: list[tuple[str, str]] = []
        if request.method == "POST" and form.is_valid():
            raw = form.read_bytes()
            try:
                bundle = bundle_module.read(raw)
                self._check_target(bundle, plugin)
                token = hold_upload(raw, request.user, purpose)  # the blob storage may be down
            except PluginError as exc:
                error, problems = bundle_error_lines(exc)
            else:
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
        dropped: list[Any] = []
        publisher_change = None
        if plugin is None:
            rows = install_capabilities(manifest)
        else:
            rows, dropped = upgrade_capabilities(plugin, manifest)
            publisher_change = lifecycle.publisher_change(plugin, info["publisher_key"])
        form = ConfirmForm(*posted(request), capability_names=list(manifest.all_capabilities),
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
            staged = request.POST.get("rollout", "") if plugin is not None else ""
            if staged:
                self._require(policy.can_roll_out(request.user))
                running = plugin.active_version.version if plugin and plugin.active_version else "-"
            try:
                if plugin is None:
                    result = lifecycle.install(bundle, granted, request.user, activate=activate, hosts=hosts)
                    done = f"Installed {manifest.name} {manifest.version}" + (" and activated it"
                                                                               if activate else "")
                elif staged:
                    share = (percent_of(request.POST.get("rollout_percent", "")) if staged == "percent"
                             else None)
                    result = lifecycle.rollout.start_upgrade(
                        plugin, bundle, granted, request.user, mode=staged, percent=share, hosts=hosts,
                        accept_new_publisher=form.cleaned_data["accept_new_publisher"])
                    cohort = "staff only" if staged == "staff" else f"{share}% of visitors"
                    done = (f"Rolling out {manifest.name} {manifest.version} to {cohort}; everyone else "
                            f"keeps {running}")
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
            preview_url=("" if not policy.can_preview(request.user) else
                         self._url("upgrade_preview", plugin.pk, token) if plugin
                         else self._url("install_preview", token)),
            downgrade=bool(current and version_key(manifest.version) <= version_key(current.version)),
            can_activate=policy.can_activate(request.user), can_grant=policy.can_grant(request.user),
            can_stage=plugin is not None and plugin.state == PluginState.ACTIVE
            and policy.can_roll_out(request.user),
            staged=request.POST.get("rollout", "") if request.method == "POST" else "",
            staged_percent=request.POST.get("rollout_percent", "10") if request.method == "POST" else "10",
            **info,
        )

    # preview on a page (gonext_plugins.preview): the plugin page, and both dialogs' held bundle

    def preview_view(self, request: HttpRequest, object_id: int) -> HttpResponse:
        self._require(policy.can_preview(request.user))
        plugin = get_object_or_404(Plugin, pk=object_id)
        versions = sorted((v.version for v in plugin.versions.all()), key=version_key, reverse=True)
        return self._preview(request, plugin, lambda version: preview.candidate_for_plugin(plugin, version),
                             back=self._plugin_url(plugin), versions=versions, subject=plugin.name)

    def install_preview_view(self, request: HttpRequest, token: str) -> HttpResponse:
        self._require(policy.can_start_install(request.user) and policy.can_preview(request.user))
        return self._staged_preview(request, token, "install", None, self._url("install_confirm", token))

    def upgrade_preview_view(self, request: HttpRequest, object_id: int, token: str) -> HttpResponse:
        self._require(policy.can_upgrade(request.user) and policy.can_preview(request.user))
        plugin = get_object_or_404(Plugin, pk=object_id)
        return self._staged_preview(request, token, f"upgrade:{plugin.slug}", plugin,
                                    self._url("upgrade_confirm", plugin.pk, token))

    def _staged_preview(self, request: HttpRequest, token: str, purpose: str, plugin: Plugin | None,
                        back: str) -> HttpResponse:
        """The held upload of a dialog, previewed as it would be installed (it is not installed)."""
        try:
            staged = self._reread(request, token, purpose)
        except PluginError as exc:
            messages.error(request, bundle_error_lines(exc)[0] if not isinstance(exc, PendingError)
                           else exc.message)
            return HttpResponseRedirect(self._url("upgrade", plugin.pk) if plugin else self._url("install"))
        manifest = staged.manifest
        return self._preview(request, plugin, lambda version: preview.candidate_for_bundle(staged, plugin),
                             back=back, versions=[], subject=f"{manifest.name} {manifest.version}")

    def _preview(self, request: HttpRequest, plugin: Plugin | None,
                 candidate: Callable[[str | None], preview.Candidate], *, back: str, versions: list[str],
                 subject: str) -> HttpResponse:
        form = PreviewForm(*posted(request), versions=versions)
        result, error = None, ""
        if request.method == "POST" and form.is_valid():
            try:
                result = preview.preview(candidate(form.cleaned_data.get("version") or None),
                                         form.cleaned_data["path"], host=request.get_host(),
                                         secure=request.is_secure())
            except PluginError as exc:
                error = sentence(exc.message)
        return self._render(request, "admin/gonext_plugins/plugin/preview.html", f"Preview {subject}",
                            form=form, result=result, error=error, suggestions=preview.suggestions(),
                            diff_rows=diff_rows(result.diff) if result else [],
                            policy_rows=sorted(result.policy.items()) if result else [],
                            back_url=back, original=plugin, plugin=plugin, crumb="Preview")

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

    def settings_view(self, request: HttpRequest, object_id: int) -> HttpResponse:
        """The plugin's settings as a form built from its schema; saving goes through
        ``lifecycle.settings.update``, whose refusals are shown at their fields."""
        can_change = policy.can_change_settings(request.user)
        self._require(can_change if request.method == "POST" else policy.can_view_plugins(request.user))
        plugin = get_object_or_404(Plugin, pk=object_id)
        described = lifecycle.settings.describe(plugin)
        seen = _settings_tag(plugin)
        form = settings_form(described, request.POST if request.method == "POST" else None, seen=seen)
        if request.method == "POST" and form.is_valid() and plugin.active_version is not None:
            if form.cleaned_data.get(SETTINGS_SEEN_FIELD) not in ("", seen):  # "": not from the form
                # Saving would put back values this form showed but someone has changed since.
                messages.error(request, "The settings were changed after this form was opened (by "
                               "someone else, in another tab or through the API). Nothing was saved: "
                               "the form shows the saved values now; make your change again.")
                return HttpResponseRedirect(self._url("settings", plugin.pk))
            manifest = lifecycle.manifest_of(plugin.active_version)
            changes: dict[str, Any] = {}
            for entry in described:
                text = form.cleaned_data.get(entry["name"], "")
                if text.strip():  # only spaces reads as blank too: the default (a secret: kept)
                    changes[entry["name"]] = lifecycle.settings.from_text(manifest, entry["name"], text)
                elif entry["set"] and not entry["secret"]:
                    changes[entry["name"]] = None  # blank: back to the default
            try:
                result = lifecycle.settings.update(plugin, changes, request.user)
            except InvalidSettings as exc:
                for field, message in exc.problems:
                    form.add_error(field if field in form.fields else None, message)
            else:
                messages.success(request, f"The settings of {plugin.name} were saved." if result.changed
                                 else "Nothing changed.")
                return HttpResponseRedirect(self._plugin_url(plugin))
        return self._render(request, "admin/gonext_plugins/plugin/settings.html",
                            f"Settings of {plugin.name}", plugin=plugin, original=plugin, form=form,
                            can_change=can_change)

    def grant_view(self, request: HttpRequest, object_id: int, capability: str) -> HttpResponse:
        """A confirmation that says what granting allows, then the grant: an optional capability
        granted after the install, or a revoked one given back (without it a plugin whose required
        capability was revoked could not be activated again from the admin)."""
        self._require(policy.can_grant(request.user))
        plugin = get_object_or_404(Plugin, pk=object_id)
        if plugin.active_version is None:
            raise Http404("the plugin has no version to grant capabilities to")
        manifest = lifecycle.manifest_of(plugin.active_version)
        if capability not in manifest.all_capabilities:
            raise Http404(f"{plugin.name} {manifest.version} does not ask for {capability}")
        if request.method == "POST":
            try:
                result = lifecycle.grant(plugin, [capability], request.user)
            except PluginError as exc:
                messages.error(request, exc.message)
            else:
                messages.success(request, f"Granted {capability} to {plugin.name}." if result.changed
                                 else f"{plugin.name} already had {capability}.")
            return HttpResponseRedirect(self._plugin_url(plugin))
        [described] = capabilities.describe([capability])
        required = capability in manifest.capabilities
        consequences = [f"{plugin.name} may use it from now on, in every process: {described.description}"]
        if capability == "http.fetch":
            consequences.append("It may reach the hosts its manifest lists: "
                                f"{', '.join(sorted(manifest.allowed_hosts)) or 'none'}.")
        if required and plugin.state != PluginState.ACTIVE:
            consequences.append(f"{manifest.version} requires it: with it, {plugin.name} can be activated "
                                "again (granting does not activate it).")
        return self._render(
            request, "admin/gonext_plugins/confirm.html", f"Grant {capability} to {plugin.name}?",
            plugin=plugin, original=plugin, heading=f"Grant “{capability}” to {plugin.name}?",
            intro=format_html("{} — <em>{}</em> (risk: {})", described.name, described.description,
                              described.risk),
            consequences=consequences, button="Yes, grant it", danger=described.risk == "high",
            cancel_url=self._plugin_url(plugin),
        )

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
        form = UninstallForm(*posted(request))
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


def _settings_tag(plugin: Plugin) -> str:
    """Which saved settings a form was opened on: a keyed hash (Django's ``salted_hmac``), so the
    page tells nothing about a secret's value, and a form opened before a change is refused."""
    saved = plugin.settings if isinstance(plugin.settings, dict) else {}
    text = orjson.dumps(saved, option=orjson.OPT_SORT_KEYS)
    return salted_hmac("gonext_plugins.settings_seen", text).hexdigest()[:32]
