"""Admin forms. They only parse what the admin typed or ticked; every rule about plugins (consent,
signatures, versions) is checked by ``bundle.read`` and ``lifecycle``, so the admin cannot drift
from the API and the commands."""

from __future__ import annotations

import json
from typing import Any, cast

from django import forms

from . import preview
from .conf import settings
from .errors import InvalidPreviewPath


class UploadBundleForm(forms.Form):
    """Step one of install and upgrade: the ``.gnplugin`` file."""

    bundle = forms.FileField(
        label="Plugin bundle",
        help_text="A .gnplugin file from the plugin's publisher. Nothing is installed until you "
                  "have reviewed what it asks for and confirmed.",
        widget=forms.ClearableFileInput(attrs={"accept": ".gnplugin,application/zip"}),
    )

    def read_bytes(self) -> bytes:
        """The upload's bytes, read at most one byte past the bundle cap (``bundle.read`` refuses
        an oversized file with its own message)."""
        upload = self.cleaned_data["bundle"]
        upload.seek(0)
        return upload.read(settings.MAX_BUNDLE_BYTES + 1)


class ConfirmForm(forms.Form):
    """Step two: which capabilities (and http.fetch hosts) the admin grants, and how to proceed.

    The choices are whatever the re-verified bundle asks for; what is *required* is decided by
    ``lifecycle`` (which refuses with ``ConsentRequired``), not by this form.
    """

    capabilities = forms.MultipleChoiceField(required=False, widget=forms.CheckboxSelectMultiple)
    hosts = forms.MultipleChoiceField(required=False, widget=forms.CheckboxSelectMultiple)
    accept_new_publisher = forms.BooleanField(required=False)  # upgrade signed by another key

    def __init__(self, *args: Any, capability_names: list[str], host_names: list[str],
                 **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        capabilities, hosts = self.fields["capabilities"], self.fields["hosts"]
        # self.fields is typed dict[str, Field]; both are the MultipleChoiceFields declared above.
        assert isinstance(capabilities, forms.MultipleChoiceField)
        assert isinstance(hosts, forms.MultipleChoiceField)
        capabilities.choices = [(name, name) for name in capability_names]
        hosts.choices = [(name, name) for name in host_names]


class TrustKeyForm(forms.Form):
    """A publisher key to trust; the key itself is validated by ``lifecycle.trust_key``."""

    name = forms.CharField(max_length=200, help_text="Who publishes with this key, e.g. \"Acme Plugins\".")
    public_key = forms.CharField(
        label="Public key", max_length=200,
        help_text="The publisher's ed25519 public key in base64 (44 characters), as "
                  "`manage.py plugin keygen` prints it. Check it with the publisher over a channel "
                  "you trust: every bundle signed with it will install here.",
        widget=forms.TextInput(attrs={"size": 60, "autocomplete": "off", "spellcheck": "false"}),
    )


class UninstallForm(forms.Form):
    """Whether to keep the plugin's key-value data for a later reinstall."""

    keep_data = forms.BooleanField(
        required=False, label="Keep its stored data",
        help_text="Keep the plugin's key-value rows so a reinstall of the same plugin finds them.",
    )


SETTINGS_SEEN_FIELD = "__settings_seen"
"""A hidden field of the settings form: which saved settings it was opened on (see
``PluginAdminViews.settings_view``); a name no manifest setting can take (they are identifiers)."""


def settings_form(described: list[dict[str, Any]], data: Any = None, seen: str = "") -> forms.Form:
    """The plugin page's settings form, built from the schema (``lifecycle.settings.describe``).

    Every field is text the way the admin types it; ``lifecycle.settings`` reads it as the setting's
    type and checks it, so the rules stay there. A secret is a password field that never shows its
    value: left blank it keeps what is saved. Any other field left blank goes back to its default.
    """
    fields: dict[str, forms.Field] = {}
    initial: dict[str, str] = {}
    for entry in described:
        name, kind = entry["name"], entry["type"]
        help_text = entry.get("description", "")
        widget: forms.Widget
        if entry["secret"]:
            widget = forms.PasswordInput(render_value=False, attrs={"autocomplete": "new-password"})
            state = "set" if entry["set"] else "not set"
            help_text = f"{help_text} (secret: {state}; leave blank to keep it)".strip()
        elif "enum" in entry or kind == "boolean":
            options = entry.get("enum", [True, False])
            default = entry.get("default")
            blank = "(default)" if default is None else f"(default: {_as_text(default)})"
            widget = forms.Select(choices=[("", blank), *((_as_text(o), _as_text(o)) for o in options)])
        else:
            attrs = {"inputmode": "numeric"} if kind in ("integer", "number") else {}
            if entry.get("default") is not None:  # blank means the default: show which
                attrs["placeholder"] = _as_text(entry["default"])
            widget = forms.TextInput(attrs=attrs)
        fields[name] = forms.CharField(label=entry["title"], required=False, strip=False, widget=widget,
                                       help_text=help_text)
        if not entry["secret"] and entry["set"]:
            initial[name] = _as_text(entry.get("value"))
    fields[SETTINGS_SEEN_FIELD] = forms.CharField(required=False, widget=forms.HiddenInput)
    initial[SETTINGS_SEEN_FIELD] = seen
    form_class = type("PluginSettingsForm", (forms.Form,), fields)
    form: forms.Form = form_class(data, initial=initial)
    return form


def _as_text(value: Any) -> str:
    """A value as the form shows it: strings as they are, the rest as JSON (``true``, ``250``)."""
    return value if isinstance(value, str) else json.dumps(value)


class PreviewForm(forms.Form):
    """The "Preview on a page" form: a path of the site (checked by ``preview.check_path``) and, on the
    plugin page, which installed version."""

    path = forms.CharField(max_length=2000, initial="/", label="Page",
                           help_text="a path of this site, e.g. / or /posts/hello/")
    version = forms.ChoiceField(required=False, choices=(), label="Version")

    def __init__(self, *args: Any, versions: list[str] | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if versions:
            field = cast(forms.ChoiceField, self.fields["version"])
            field.choices = [("", "the default"), *((v, v) for v in versions)]
        else:
            del self.fields["version"]

    def clean_path(self) -> str:
        try:
            return preview.check_path(self.cleaned_data["path"])
        except InvalidPreviewPath as exc:
            raise forms.ValidationError(exc.message, code=exc.code) from exc
