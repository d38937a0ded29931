"""The one compatibility rule: can this site run a plugin version at all?

A version is *incompatible* when something it cannot work without is not on this site, whatever
the admin grants: its ABI version, a required capability (and so the host functions under it), a
host version its ``requires.host`` range excludes, or a module import the runtime does not link.
Install and upgrade refuse such a version (``IncompatiblePlugin``, before anything is stored); a
version that *became* incompatible (the site or the app was upgraded) is skipped by the registry
with a warning and comes back by itself once the site offers what it needs again.

Some gaps are warnings, never incompatibility: an optional capability the site does not register
(the plugin must cope without it), and a hook the site does not declare (a site may fire a hook it
never declared, as in WordPress: the rule is :func:`gonext_plugins.hooks.unoffered`, handed in by
``AppConfig.ready`` through :func:`set_hook_rule` because the hook catalogue sits above this layer).

Host functions: a manifest cannot name the host functions it calls, only capabilities, and every
host function belongs to one capability (``capabilities.host_function``). A site that drops a
feature unregisters its capability, which removes its functions with it, so "a required capability
the site does not register" is the reason that covers a missing host function. A registered
capability without functions is not a reason: ``hooks.subscribe`` and ``html.raw`` are policy
capabilities that have none by design.

Pure policy: no Django, no database (:mod:`gonext_plugins.lifecycle.compat` reads stored versions).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import gonext_plugins

from . import capabilities
from .diagnostics.wasmbin import wasm_imports
from .manifest import Manifest, range_satisfied, schema
from .runtime.loader import ALLOWED_IMPORTS

ABI = "abi"
CAPABILITY = "capability"
HOST_VERSION = "host_version"
IMPORT = "import"
MANIFEST = "manifest"
HOOK = "hook"  # warnings only
REASON_CODES = (ABI, CAPABILITY, HOST_VERSION, IMPORT, MANIFEST)
"""Stable codes of an incompatibility :class:`Reason` (the API and the system check show them)."""

Import = tuple[str, str]
"""``(module, name)`` of one wasm import."""


@dataclass(frozen=True, order=True)
class Reason:
    """One reason a version cannot run here (or, as a warning, one thing it will run without)."""

    code: str
    subject: str  # what is missing: the ABI version, the capability, "env.gn_x", the range...
    message: str

    def as_dict(self) -> dict[str, str]:
        return {"code": self.code, "subject": self.subject, "message": self.message}


@dataclass(frozen=True)
class Site:
    """What this site offers plugins, as the rule sees it."""

    abi_versions: frozenset[int]
    capabilities: frozenset[str]
    imports: Mapping[str, frozenset[str]]  # import module -> the function names it links
    host_version: str


def supported_abi_versions() -> frozenset[int]:
    """The ABI versions this host serves: the manifest schema's ``abi`` enum, their one home."""
    return frozenset(schema()["$defs"]["abi"]["enum"])


def this_site() -> Site:
    """This process's site: its ABI versions, registered capabilities and linked imports."""
    return Site(
        abi_versions=supported_abi_versions(),
        capabilities=frozenset(c.name for c in capabilities.all_capabilities()),
        imports={module: frozenset(names) for module, names in ALLOWED_IMPORTS.items()},
        host_version=gonext_plugins.__version__,
    )


def site_fingerprint(site: Site | None = None) -> tuple[Any, ...]:
    """A value that changes when what the site offers changes (the registry retries skipped
    plugins then)."""
    site = site or this_site()
    return (site.abi_versions, site.capabilities, tuple(sorted(site.imports.items())), site.host_version)


_imports_by_sha: dict[str, tuple[Import, ...] | None] = {}
_IMPORTS_KEPT = 512


def _read_imports(wasm: bytes) -> tuple[Import, ...] | None:
    try:
        return tuple((imp.module, imp.name) for imp in wasm_imports(wasm))
    except (IndexError, ValueError):  # malformed bytes: the loader names what is wrong with them
        return None


def imports_of(wasm: bytes | Callable[[], bytes], sha256: str | None = None) -> tuple[Import, ...] | None:
    """A module's imports read from its import section (no compile), or None when unreadable.
    ``wasm`` may be a function that reads the bytes: with ``sha256`` (of the bytes) the answer is
    remembered, so a stored blob, which never changes, is read once per process."""
    if sha256 is not None and sha256 in _imports_by_sha:
        return _imports_by_sha[sha256]
    found = _read_imports(wasm() if callable(wasm) else wasm)
    if sha256 is not None:
        if len(_imports_by_sha) >= _IMPORTS_KEPT:
            _imports_by_sha.clear()
        _imports_by_sha[sha256] = found
    return found


def reasons(*, abi: int, required: Iterable[str], requires_host: str | None = None,
            imports: Iterable[Import] | None = None, site: Site | None = None) -> list[Reason]:
    """Why this version cannot run on ``site`` (this one by default); empty when it can."""
    site = site or this_site()
    found: list[Reason] = []
    if abi not in site.abi_versions:
        served = ", ".join(str(v) for v in sorted(site.abi_versions))
        found.append(Reason(ABI, str(abi), f"it is built for plugin ABI {abi}; this site serves ABI "
                            f"{served}"))
    for name in sorted(set(required) - site.capabilities - capabilities.ALWAYS_GRANTED):
        found.append(Reason(CAPABILITY, name, f"it requires the capability {name!r}, which this site does "
                            "not register (nor the host functions under it)"))
    if requires_host:
        try:
            satisfied = range_satisfied(requires_host, site.host_version)
        except ValueError:
            satisfied = False
        if not satisfied:
            found.append(Reason(HOST_VERSION, requires_host, f"it needs gonext_plugins {requires_host}; "
                                f"this site runs {site.host_version}"))
    for module, name in sorted(set(imports or ())):
        linked = site.imports.get(module)
        if linked is None or name not in linked:
            found.append(Reason(IMPORT, f"{module}.{name}", f"its module imports {module}.{name}, which this "
                                "host's runtime does not link"))
    return found


def manifest_reasons(manifest: Manifest, imports: Iterable[Import] | None = None,
                     site: Site | None = None) -> list[Reason]:
    """:func:`reasons` for a validated manifest."""
    return reasons(abi=manifest.abi, required=manifest.capabilities,
                   requires_host=manifest.requires_host, imports=imports, site=site)


# --- warnings (the plugin runs, without something) -----------------------------------------------

HookRule = Callable[[Iterable[tuple[str, str]]], list[tuple[str, str, str]]]
_hook_rule: HookRule | None = None


def set_hook_rule(rule: HookRule) -> None:
    """Install the "hooks the site does not offer" rule (``AppConfig.ready``: ``hooks.unoffered``)."""
    global _hook_rule
    _hook_rule = rule


def warnings(manifest: Manifest, site: Site | None = None) -> list[Reason]:
    """What the version will run without: optional capabilities the site does not register, and
    hooks the site does not declare."""
    site = site or this_site()
    found = [Reason(CAPABILITY, name, f"the optional capability {name!r} is not registered on this site; "
                    "the plugin runs without it")
             for name in sorted(set(manifest.optional_capabilities) - site.capabilities)]
    if _hook_rule is not None:
        found += [Reason(HOOK, name, f"{kind} {name}: {why}")
                  for name, kind, why in _hook_rule((hook.name, hook.kind) for hook in manifest.hooks)]
    return found
