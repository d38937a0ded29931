"""Manifest v1: JSON Schema validation plus the rules a schema cannot express.

The schema lives in ``schemas/manifest-v1.json`` so plugin authors and editors can use it too;
this module loads it once, runs it with a cached validator, and turns *every* problem into a
sentence with a JSON path (``$.hooks[0].kind: must be one of "action", "filter"``), because an
author fixing a manifest wants the whole list at once, not one error per upload.

No Django here: the manifest is pure data (layer 2). It stays one module although it is long:
the schema's sentences, the semantic rules and the version ranges (``requires.host``) all feed the
one problem list :func:`problems` returns, and each part is small.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from functools import cache
from importlib import resources
from typing import TYPE_CHECKING, Any, cast
from urllib.parse import urlsplit

import gonext_plugins
from gonext_plugins import netpolicy, untrusted_json
from gonext_plugins.errors import ManifestError
from gonext_plugins.storable import unstorable_paths

if TYPE_CHECKING:
    import jsonschema

API_VERSION = "gonext.io/v1"
SCHEMA_RESOURCE = "schemas/manifest-v1.json"
DEFAULT_PRIORITY = 10
DEFAULT_MAX_RETRIES = 3

PathElement = str | int
Problem = tuple[tuple[PathElement, ...], str]


@dataclass(frozen=True)
class Hook:
    """One hook the plugin subscribes to."""

    name: str
    kind: str  # "action" or "filter"
    priority: int = DEFAULT_PRIORITY
    pure: bool = False  # its result depends only on its input and the settings: it may be reused


@dataclass(frozen=True)
class Job:
    """One background job the plugin declares."""

    name: str
    max_retries: int = DEFAULT_MAX_RETRIES


@dataclass(frozen=True)
class Limits:
    """Limits the plugin *asks* for; ``None`` means "the host default". The host may lower them."""

    memory_pages: int | None = None
    fuel: int | None = None
    timeout_ms: int | None = None


@dataclass(frozen=True)
class Manifest:
    """A validated manifest. ``raw`` is the manifest exactly as the author wrote it."""

    slug: str
    name: str
    version: str
    abi: int
    description: str = ""
    author: str = ""
    homepage: str = ""
    capabilities: tuple[str, ...] = ()
    optional_capabilities: tuple[str, ...] = ()
    hooks: tuple[Hook, ...] = ()
    jobs: tuple[Job, ...] = ()
    limits: Limits = field(default_factory=Limits)
    allowed_hosts: tuple[str, ...] = ()
    requires_host: str | None = None
    settings: dict[str, dict[str, Any]] = field(default_factory=dict, compare=False, hash=False)
    """Declared settings: name -> its schema (``type``, ``title``, ``default``, ``secret``...)."""
    required_settings: tuple[str, ...] = ()
    raw: dict[str, Any] = field(default_factory=dict, compare=False, hash=False, repr=False)

    @property
    def all_capabilities(self) -> tuple[str, ...]:
        """Required then optional capabilities: everything the plugin may be granted."""
        return self.capabilities + tuple(c for c in self.optional_capabilities if c not in self.capabilities)

    def job(self, name: str) -> Job | None:
        """The declared job called ``name``, or None."""
        return next((job for job in self.jobs if job.name == name), None)


# --- schema ---------------------------------------------------------------------------------------


@cache
def schema() -> dict[str, Any]:
    """The manifest v1 JSON Schema, read once from the package."""
    text = resources.files("gonext_plugins").joinpath(SCHEMA_RESOURCE).read_text(encoding="utf-8")
    loaded: dict[str, Any] = json.loads(text)
    return loaded


def _whole_string_pattern(validator: Any, pattern: str, instance: Any,
                          schema: Mapping[str, Any]) -> Iterable[jsonschema.ValidationError]:
    """JSON Schema's ``pattern`` is a *search*, and Python's ``$`` also matches before a trailing
    newline, so ``^[a-z]+$`` would pass ``"x\\n"``. Every manifest pattern describes a whole value,
    so it must match the whole string."""
    from jsonschema import ValidationError  # loaded by _dialect() before any validator runs

    if validator.is_type(instance, "string") and not re.fullmatch(pattern, instance):
        yield ValidationError(f"{instance!r} does not match {pattern!r}")


def _is_python_int(checker: Any, instance: Any) -> bool:
    """JSON Schema counts ``32.0`` as an integer; the runtime's limits (and every count in a
    manifest) need a real ``int``, so a float there is refused here, not later as a 500."""
    return isinstance(instance, int) and not isinstance(instance, bool)


@cache
def _dialect() -> type[jsonschema.Draft202012Validator]:
    """The manifest's own dialect: Draft 2020-12 with whole-string patterns and integers that are
    ints. jsonschema is imported here, on the first manifest or settings object checked, not with
    this module: with referencing and rpds it was ~50 ms of every process's ``django.setup()``,
    and a management command or a job worker may check none (issue #18, start-up)."""
    import jsonschema

    # (validators.extend is untyped in types-jsonschema: hence the ignore.)
    dialect: type[jsonschema.Draft202012Validator] = jsonschema.validators.extend(  # type: ignore[no-untyped-call]
        jsonschema.Draft202012Validator, {"pattern": _whole_string_pattern},
        type_checker=jsonschema.Draft202012Validator.TYPE_CHECKER.redefine("integer", _is_python_int),
    )
    return dialect


@cache
def _validator() -> jsonschema.Draft202012Validator:
    dialect = _dialect()
    return dialect(schema(), format_checker=dialect.FORMAT_CHECKER)


# --- paths and sentences ----------------------------------------------------------------------------

_IDENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def format_path(path: Iterable[PathElement]) -> str:
    """``("hooks", 0, "kind")`` -> ``$.hooks[0].kind`` (JSONPath, as people read it)."""
    out = "$"
    for element in path:
        if isinstance(element, int):
            out += f"[{element}]"
        elif _IDENT.fullmatch(element):
            out += f".{element}"
        else:
            out += f"[{json.dumps(element)}]"
    return out


def _sort_key(problem: Problem) -> tuple[Any, ...]:
    # Natural order: $.hooks[2] before $.hooks[10]; ints and strings never compared directly.
    path, message = problem
    return (tuple((0, e, "") if isinstance(e, int) else (1, 0, e) for e in path), message)


_JSON_TYPES = {dict: "object", list: "array", str: "string", bool: "boolean", int: "integer",
               float: "number", type(None): "null"}


def _json_type(value: Any) -> str:
    return _JSON_TYPES.get(type(value), type(value).__name__)


def _article(word: str) -> str:
    return f"an {word}" if word[0] in "aeiou" else f"a {word}"


def _describe(error: jsonschema.ValidationError) -> list[Problem]:
    """Turn one jsonschema error into one or more (path, sentence) problems."""
    path = tuple(error.absolute_path)
    kind = error.validator
    # The stubs type these as unions with jsonschema's "unset" marker; on a reported error they
    # are set, and what they hold is whatever JSON the schema and the manifest hold.
    value: Any = error.validator_value
    instance: Any = error.instance
    error_schema: Any = error.schema
    custom = error_schema.get("x-error") if isinstance(error_schema, dict) else None
    if "propertyNames" in error.relative_schema_path and isinstance(instance, str):
        path = (*path, instance)  # a refused key: point at it, not at the object holding it

    if kind == "required":
        return [((*path, name), "is required") for name in value
                if isinstance(instance, dict) and name not in instance]
    if kind == "additionalProperties":
        known = sorted(error_schema.get("properties", {}))
        extra = [k for k in instance if k not in known] if isinstance(instance, dict) else []
        return [((*path, key), f"is not a known field (known fields: {', '.join(known)})")
                for key in extra]
    if kind == "type":
        expected = " or ".join(_article(t) for t in ([value] if isinstance(value, str) else value))
        return [(path, f"must be {expected}, not {_article(_json_type(instance))}")]
    if kind == "uniqueItems":
        seen: dict[str, int] = {}
        problems: list[Problem] = []
        for index, item in enumerate(instance):
            key = json.dumps(item, sort_keys=True)
            if key in seen:
                problems.append(((*path, index),
                                 f"repeats {key} (already at index {seen[key]}); list each once"))
            else:
                seen[key] = index
        return problems
    if custom and kind in {"pattern", "const", "enum", "format"}:
        return [(path, custom)]
    if kind == "const":
        return [(path, f"must be {json.dumps(value)}")]
    if kind == "enum":
        return [(path, f"must be one of {', '.join(json.dumps(v) for v in value)}")]
    if kind == "pattern":
        return [(path, f"does not match the pattern {value}")]
    if kind == "minLength":
        return [(path, "must not be empty" if value == 1 else f"must be at least {value} characters long")]
    if kind == "maxLength":
        return [(path, f"must be at most {value} characters long")]
    if kind == "minimum":
        return [(path, f"must be at least {value}")]
    if kind == "maximum":
        return [(path, f"must be at most {value}")]
    if kind == "minItems":
        return [(path, f"must have at least {value} item{'s' if value != 1 else ''}")]
    if kind == "maxItems":
        return [(path, f"must have at most {value} items")]
    if kind == "format":
        return [(path, f"must be a valid {value}")]
    return [(path, error.message)]


# --- version ranges ---------------------------------------------------------------------------

_VERSION = re.compile(
    r"^(?P<release>\d+(?:\.\d+){0,2})(?:-(?P<pre>[0-9A-Za-z-]+(?:\.[0-9A-Za-z-]+)*))?(?:\+[0-9A-Za-z.-]+)?$"
)
_CLAUSE = re.compile(r"^(?P<op>>=|<=|==|!=|>|<|=)?\s*(?P<version>\S+)$")
_OPERATORS = {
    ">=": lambda a, b: a >= b, "<=": lambda a, b: a <= b, ">": lambda a, b: a > b,
    "<": lambda a, b: a < b, "==": lambda a, b: a == b, "=": lambda a, b: a == b,
    "!=": lambda a, b: a != b,
}


def version_key(text: str) -> tuple[Any, ...]:
    """Semver 2.0 precedence as a sortable key; a partial version ("0.1") is padded with zeros.

    Raises ValueError for anything that is not a version.
    """
    match = _VERSION.fullmatch(text.strip())
    if not match:
        raise ValueError(f"{text!r} is not a version")
    release = [int(part) for part in match["release"].split(".")]
    release += [0] * (3 - len(release))
    pre = match["pre"]
    if pre is None:
        pre_key: tuple[Any, ...] = (1,)  # a release sorts after all its pre-releases
    else:
        pre_key = (0, tuple((0, int(p), "") if p.isdigit() else (1, 0, p) for p in pre.split(".")))
    return (*release, pre_key)


def parse_range(text: str) -> list[tuple[str, tuple[Any, ...]]]:
    """Parse ``">=0.1,<1"`` (comma-separated clauses; ``*`` means any) into (operator, key) pairs.

    Hand-written rather than ``packaging.specifiers`` because that speaks PEP 440, not semver, and
    is not a runtime dependency of the app.
    """
    if text.strip() == "*":
        return []
    clauses = []
    for raw in text.split(","):
        match = _CLAUSE.fullmatch(raw.strip())
        if not match:
            raise ValueError(f"clause {raw.strip()!r} is not an operator and a version")
        clauses.append((match["op"] or "==", version_key(match["version"])))
    return clauses


def range_satisfied(text: str, version: str) -> bool:
    """Whether ``version`` satisfies the range ``text`` (raises ValueError if either is malformed)."""
    key = version_key(version)
    return all(_OPERATORS[op](key, bound) for op, bound in parse_range(text))


# --- semantic checks ---------------------------------------------------------------------------


def _items(data: Mapping[str, Any], key: str) -> list[tuple[int, Any]]:
    value = data.get(key)
    return list(enumerate(value)) if isinstance(value, list) else []


def _semantic_problems(data: Mapping[str, Any], host_version: str | None,
                       invalid_settings: frozenset[str] = frozenset()) -> list[Problem]:
    """Rules the schema cannot say. Defensive: ``data`` may also have failed the schema
    (``invalid_settings``: the declared settings whose own declaration did)."""
    problems: list[Problem] = []

    seen_jobs: dict[str, int] = {}
    for index, job in _items(data, "jobs"):
        name = job.get("name") if isinstance(job, dict) else None
        if isinstance(name, str):
            if name in seen_jobs:
                problems.append(((("jobs", index, "name")),
                                 f"job {json.dumps(name)} is already declared at $.jobs[{seen_jobs[name]}]; "
                                 "job names must be unique within a manifest"))
            else:
                seen_jobs[name] = index

    seen_hooks: dict[tuple[str, str], int] = {}
    for index, hook in _items(data, "hooks"):
        if not isinstance(hook, dict):
            continue
        name, kind = hook.get("name"), hook.get("kind")
        if isinstance(name, str) and isinstance(kind, str):
            if (name, kind) in seen_hooks:
                problems.append((("hooks", index),
                                 f"{kind} {json.dumps(name)} is already declared at "
                                 f"$.hooks[{seen_hooks[(name, kind)]}]; declare each hook once"))
            else:
                seen_hooks[(name, kind)] = index

    required = {c for _, c in _items(data, "capabilities") if isinstance(c, str)}
    for index, capability in _items(data, "optionalCapabilities"):
        if isinstance(capability, str) and capability in required:
            problems.append((("optionalCapabilities", index),
                             f"{json.dumps(capability)} is also a required capability; "
                             "list it in capabilities or optionalCapabilities, not both"))

    http = data.get("http")
    if isinstance(http, dict):
        for index, host in _items(http, "allowedHosts"):
            if not isinstance(host, str):
                continue
            name, port = netpolicy.split_host(host)
            if len(name) > 253:
                problems.append((("http", "allowedHosts", index), "host name is longer than 253 characters"))
            if port.isdigit() and not 1 <= int(port) <= 65535:
                problems.append((("http", "allowedHosts", index), "port must be between 1 and 65535"))
            problems.extend(_host_problems(index, name, allow_private=True))

    problems.extend(_settings_problems(data.get("settings"), invalid_settings))

    requires = data.get("requires")
    host_range = requires.get("host") if isinstance(requires, dict) else None
    if isinstance(host_range, str) and host_range.strip():
        try:
            parse_range(host_range)
            satisfied = host_version is None or range_satisfied(host_range, host_version)
        except ValueError as exc:
            problems.append((("requires", "host"),
                             f"is not a version range such as \">=0.1,<1\" ({exc})"))
        else:
            if not satisfied:
                problems.append((("requires", "host"),
                                 f"this plugin needs a host version {host_range}, but this host runs "
                                 f"gonext_plugins {host_version}; upgrade gonext_plugins or use a "
                                 "version of the plugin made for this host"))
    return problems


# --- settings -------------------------------------------------------------------------------------
#
# A manifest declares ``settings`` as a JSON Schema subset; the values an admin saves are checked
# against the schema built from it here (the one home of the rule), with the manifest's dialect
# (whole-string patterns, integers that are ints) and two formats of our own: ``url`` (http or
# https with a host) and ``email``.

_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")


def _is_url(value: object) -> bool:
    if not isinstance(value, str):
        return True
    parts = urlsplit(value)
    return parts.scheme in ("http", "https") and bool(parts.hostname) and not any(c.isspace() for c in value)


def _is_email(value: object) -> bool:
    return not isinstance(value, str) or bool(_EMAIL.fullmatch(value))


@cache
def _setting_formats() -> jsonschema.FormatChecker:
    """Only our two formats (``url``, ``email``); jsonschema imported late, as in :func:`_dialect`."""
    import jsonschema

    checker = jsonschema.FormatChecker(formats=())
    checker.checks("url")(_is_url)
    checker.checks("email")(_is_email)
    return checker


_SCHEMA_KEYS = ("type", "enum", "minimum", "maximum", "minLength", "maxLength", "format")


def settings_schema(declared: Mapping[str, Mapping[str, Any]],
                    required: Iterable[str] = ()) -> dict[str, Any]:
    """The JSON Schema a settings object must pass: the declared properties with only their
    checking keywords (``title``, ``secret`` and the like are for people and the host)."""
    return {"type": "object", "additionalProperties": False, "required": sorted(required),
            "properties": {name: {k: v for k, v in spec.items() if k in _SCHEMA_KEYS}
                           for name, spec in declared.items()}}


def effective_settings(manifest: Manifest, stored: Mapping[str, Any] | None) -> dict[str, Any]:
    """What the plugin reads: each declared setting's stored value, else its default; a setting
    with neither is absent. Stored keys the manifest does not declare (left by another version)
    are not the plugin's settings now, so they are left out."""
    stored = stored if isinstance(stored, Mapping) else {}
    values: dict[str, Any] = {}
    for name, spec in manifest.settings.items():
        if name in stored:
            values[name] = stored[name]
        elif "default" in spec:
            values[name] = spec["default"]
    return values


def settings_problems(declared: Mapping[str, Mapping[str, Any]], values: Any,
                      required: Iterable[str] = ()) -> list[tuple[str, str]]:
    """Every problem with ``values`` for these declared settings, as sorted ``(name, sentence)``
    pairs (the name is ``$`` for the object itself). A secret's value never appears in a sentence."""
    unsafe = untrusted_json.problems(values)
    if unsafe:
        return sorted({(format_path(path), message) for path, message in unsafe})
    validator = _dialect()(settings_schema(declared, required), format_checker=_setting_formats())
    errors = list(validator.iter_errors(values))
    typed = {tuple(e.absolute_path) for e in errors if e.validator == "type"}  # the rest is noise there
    found: set[tuple[str, str]] = set()
    for error in errors:
        if error.validator != "type" and tuple(error.absolute_path) in typed:
            continue
        for path, message in _describe(error):
            name = str(path[0]) if path else "$"
            if path and declared.get(name, {}).get("secret") and error.validator in ("enum", "const"):
                message = "is not one of the allowed values"
            found.add((name, message))
    found.update((format_path(path)[2:] or "$", "contains a NUL character or a lone surrogate, which cannot "
                  "be stored") for path in unstorable_paths(values))
    return sorted(found)


_NOT_NUMERIC = ("minLength", "maxLength", "format", "secret")
_MISPLACED = {"string": ("minimum", "maximum"), "boolean": ("minimum", "maximum", *_NOT_NUMERIC),
              "integer": _NOT_NUMERIC, "number": _NOT_NUMERIC}  # keywords that do not apply to a type


def _settings_problems(section: Any, invalid: frozenset[str] = frozenset()) -> list[Problem]:
    """Rules for a declared ``settings`` section that the schema cannot say: bounds only on the
    types they apply to, enums and defaults of the setting's own type and within its bounds, and
    ``required`` naming declared settings. A setting in ``invalid`` (its declaration failed the
    schema, which says why) is not checked further: its enum and default would be validated against
    a schema that is not one (an unknown type, an enum that is not a list)."""
    if not isinstance(section, dict) or not isinstance(section.get("properties"), dict):
        return []
    problems: list[Problem] = []
    declared = {k: v for k, v in section["properties"].items() if isinstance(v, dict)}
    for name, spec in declared.items():
        if name in invalid:  # the schema requires a known type: every other spec has one
            continue
        kind = str(spec["type"])
        where = ("settings", "properties", name)
        misplaced = _MISPLACED[kind]
        wrong = [((*where, key), f"does not apply to a {kind} setting") for key in misplaced if key in spec]
        problems.extend(wrong)
        if wrong:
            continue
        check = {name: {k: v for k, v in spec.items() if k != "enum"}}
        for index, option in enumerate(spec.get("enum", ()) if isinstance(spec.get("enum"), list) else ()):
            for _, message in settings_problems(check, {name: option}):
                problems.append(((*where, "enum", index), message))
        if "default" in spec:
            for _, message in settings_problems({name: spec}, {name: spec["default"]}):
                problems.append(((*where, "default"), message))
    for index, name in _items(section, "required"):
        if isinstance(name, str) and name not in declared:
            problems.append((("settings", "required", index), f"names {json.dumps(name)}, which is not a "
                             "declared setting"))
    return problems


# --- entry point -------------------------------------------------------------------------------


def _host_problems(index: int, name: str, *, allow_private: bool) -> list[Problem]:
    refusal = netpolicy.host_refusal(name, allow_private=allow_private)
    return [(("http", "allowedHosts", index), refusal)] if refusal else []


def check_hosts(manifest: Manifest, *, allow_private: bool) -> None:
    """Refuse the ``http.allowedHosts`` this site does not accept: IP literals and ``localhost``
    unless it opted in with ``HTTP_FETCH_ALLOW_PRIVATE`` (obfuscated numeric hosts and never-
    reachable addresses are refused by :func:`validate` for every site). Separate from ``validate``
    because it is the installing site's rule: packing, signing and reading stored manifests skip it."""
    found: list[Problem] = []
    for index, host in enumerate(manifest.allowed_hosts):
        found.extend(_host_problems(index, netpolicy.split_host(host)[0], allow_private=allow_private))
    if found:
        raise ManifestError([(format_path(path), message) for path, message in sorted(found, key=_sort_key)],
                            plugin=manifest.slug)


def _load_json(data: bytes | str) -> tuple[Any, list[Problem]]:
    """Parse JSON strictly: UTF-8 only, no NaN/Infinity, a repeated key is a problem."""
    if isinstance(data, bytes | bytearray | memoryview):
        try:
            text = bytes(data).decode("utf-8")
        except UnicodeDecodeError as exc:
            raise ManifestError([("$", f"is not UTF-8 text (bad byte at offset {exc.start}); "
                                       "save manifest.json as UTF-8")]) from exc
    else:
        text = data
    duplicates: list[Problem] = []

    def pairs(items: list[tuple[str, Any]]) -> dict[str, Any]:
        obj: dict[str, Any] = {}
        for key, value in items:
            if key in obj:
                duplicates.append(((), f"the key {json.dumps(key)} appears twice in one object; keep one"))
            obj[key] = value
        return obj

    def no_constant(name: str) -> Any:
        raise ValueError(f"{name} is not valid JSON")

    try:
        parsed = json.loads(text, object_pairs_hook=pairs, parse_constant=no_constant)
    except json.JSONDecodeError as exc:
        where = f"line {exc.lineno} column {exc.colno}"
        raise ManifestError([("$", f"is not valid JSON: {exc.msg} at {where}")]) from exc
    except ValueError as exc:
        raise ManifestError([("$", f"is not valid JSON: {exc}")]) from exc
    except RecursionError as exc:  # deeper than the parser's stack: far past the depth limit
        raise ManifestError([("$", f"is nested more than {untrusted_json.MAX_DEPTH} levels deep")]) from exc
    return parsed, duplicates


def problems(data: Any, *, check_host: bool = True, host_version: str | None = None) -> list[tuple[str, str]]:
    """Every problem with an already-parsed manifest, as sorted ``(json path, sentence)`` pairs."""
    unsafe = untrusted_json.problems(data)
    if unsafe:  # the schema's recursive walk would overflow, or the text cannot be stored
        return [(format_path(path), message) for path, message in sorted(set(unsafe), key=_sort_key)]
    errors = list(_validator().iter_errors(data))
    # A wrong type makes other complaints about the same value noise ("1" is not an integer *and*
    # not in the enum): keep only the type error there.
    typed = {tuple(e.absolute_path) for e in errors if e.validator == "type"}
    found: list[Problem] = []
    for error in errors:
        if error.validator == "type" or tuple(error.absolute_path) not in typed:
            found.extend(_describe(error))
    if isinstance(data, Mapping):
        version = (host_version or gonext_plugins.__version__) if check_host else None
        invalid = frozenset(str(e.absolute_path[2]) for e in errors if len(e.absolute_path) > 2
                            and list(e.absolute_path)[:2] == ["settings", "properties"])
        found.extend(_semantic_problems(data, version, invalid))
    # Stored as jsonb and in text columns: a NUL or a lone surrogate anywhere (keys included) would
    # fail the install on PostgreSQL (or on every database), so it is a problem like any other.
    found.extend((path, "contains a NUL character or a lone surrogate, which cannot be stored; "
                        "remove it (or escape it in the text)") for path in unstorable_paths(data))
    unique = sorted(set(found), key=_sort_key)
    return [(format_path(path), message) for path, message in unique]


def validate(data: Mapping[str, Any] | bytes | str, *, check_host: bool = True,
             host_version: str | None = None) -> Manifest:
    """Validate a manifest (a dict, or JSON bytes/str) and return it as a :class:`Manifest`.

    Raises :class:`ManifestError` listing every problem, sorted by JSON path. ``check_host=False``
    skips only "is ``requires.host`` satisfied by this host" (the range must still parse): packing
    and signing happen for hosts other than the one running the command.
    """
    duplicates: list[Problem] = []
    if isinstance(data, bytes | bytearray | memoryview | str):
        data, duplicates = _load_json(data)
    found = [(format_path(p), m) for p, m in sorted(set(duplicates), key=_sort_key)]
    found += problems(data, check_host=check_host, host_version=host_version)
    slug = data.get("slug") if isinstance(data, Mapping) and isinstance(data.get("slug"), str) else None
    if found:
        raise ManifestError(found, plugin=slug)
    return _build(dict(cast("Mapping[str, Any]", data)))  # no problem found: it is a JSON object


def _build(data: dict[str, Any]) -> Manifest:
    limits = data.get("limits", {})
    return Manifest(
        slug=data["slug"],
        name=data["name"],
        version=data["version"],
        abi=data["abi"],
        description=data.get("description", ""),
        author=data.get("author", ""),
        homepage=data.get("homepage", ""),
        capabilities=tuple(data["capabilities"]),
        optional_capabilities=tuple(data.get("optionalCapabilities", ())),
        hooks=tuple(Hook(h["name"], h["kind"], h.get("priority", DEFAULT_PRIORITY), h.get("pure", False))
                    for h in data.get("hooks", ())),
        jobs=tuple(Job(j["name"], j.get("maxRetries", DEFAULT_MAX_RETRIES)) for j in data.get("jobs", ())),
        limits=Limits(limits.get("memoryPages"), limits.get("fuel"), limits.get("timeoutMs")),
        allowed_hosts=tuple(data.get("http", {}).get("allowedHosts", ())),
        requires_host=data.get("requires", {}).get("host"),
        settings=dict(data.get("settings", {}).get("properties", {})),
        required_settings=tuple(data.get("settings", {}).get("required", ())),
        raw=data,
    )
