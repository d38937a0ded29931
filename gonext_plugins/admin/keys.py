"""The trusted publisher keys' admin views: adding a key and revoking one with its consequences.

Thin: the key is validated and stored by ``lifecycle.trust_key``, revoked by ``lifecycle.revoke_key``;
the permission policy decides who may do either.
"""

from __future__ import annotations

from typing import Any

from django.contrib import messages
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import get_object_or_404
from django.urls import reverse
from django.utils.html import format_html

from .. import lifecycle
from .. import permissions as policy
from ..errors import PluginError
from ..forms import TrustKeyForm
from ..models import Plugin, PluginState, PublisherKey
from ._common import AdminViewsMixin, posted
from .presenters import sentence


class PublisherKeyAdminViews(AdminViewsMixin):
    """Adding a key (validated by ``lifecycle.trust_key``) and revoking one with its consequences."""

    admin_site: Any
    model: type[PublisherKey]

    def trust_key_view(self, request: HttpRequest) -> HttpResponse:
        if not policy.can_trust_key(request.user):
            raise PermissionDenied
        form = TrustKeyForm(*posted(request))
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
        consequences: list[str] = [
            format_html("<strong>{}</strong> ({}) will be deactivated at once, in every process.",
                        p.name, p.slug) for p in active]
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
