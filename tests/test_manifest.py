"""Manifest v1: the schema, the extra rules, and every problem reported at once with its path."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gonext_plugins import manifest
from gonext_plugins.errors import ManifestError


def valid(**changes: Any) -> dict[str, Any]:
    data: dict[str, Any] = {
        "apiVersion": "gonext.io/v1",
        "slug": "seo",
        "name": "SEO",
        "version": "1.2.3",
        "abi": 1,
        "capabilities": ["posts.read", "hooks.subscribe"],
    }
    data.update(changes)
    return {k: v for k, v in data.items() if v is not None}


def problems_of(data: Any, **kwargs: Any) -> list[tuple[str, str]]:
    with pytest.raises(ManifestError) as info:
        manifest.validate(data, **kwargs)
    return info.value.problems


def test_minimal_manifest_and_defaults() -> None:
    m = manifest.validate(valid())
    assert (m.slug, m.name, m.version, m.abi) == ("seo", "SEO", "1.2.3", 1)
    assert m.capabilities == ("posts.read", "hooks.subscribe")
    assert m.hooks == () and m.jobs == () and m.allowed_hosts == () and m.requires_host is None
    assert m.limits == manifest.Limits()
    assert m.raw == valid()


def test_full_manifest() -> None:
    data = valid(
        description="Search engine optimisation", author="Ada", homepage="https://example.com/seo",
        optionalCapabilities=["http.fetch", "kv"],
        hooks=[{"name": "the_content", "kind": "filter"},
               {"name": "wp_head", "kind": "action", "priority": 5},
               {"name": "the_content", "kind": "action"}],
        jobs=[{"name": "seo.recompute-scores"}, {"name": "other", "maxRetries": 0}],
        limits={"memoryPages": 32, "fuel": 1000, "timeoutMs": 50},
        http={"allowedHosts": ["api.example.com", "example.com:8443", "127.0.0.1"]},
        requires={"host": ">=0.1,<1"},
        version="1.0.0-beta.2+build.7",
    )
    m = manifest.validate(data)
    assert m.hooks[0] == manifest.Hook("the_content", "filter", 10)
    assert m.hooks[1] == manifest.Hook("wp_head", "action", 5)
    assert m.jobs == (manifest.Job("seo.recompute-scores", 3), manifest.Job("other", 0))
    assert m.limits == manifest.Limits(32, 1000, 50)
    assert m.allowed_hosts == ("api.example.com", "example.com:8443", "127.0.0.1")
    assert m.all_capabilities == ("posts.read", "hooks.subscribe", "http.fetch", "kv")
    assert m.job("other") == manifest.Job("other", 0) and m.job("nope") is None
    assert hash(m)  # frozen and hashable despite the raw dict


def test_bytes_and_str_input() -> None:
    text = json.dumps(valid())
    assert manifest.validate(text) == manifest.validate(text.encode()) == manifest.validate(valid())


def test_every_problem_is_listed_at_once_sorted_with_paths() -> None:
    data = valid(
        apiVersion="gonext.io/v2", slug="Bad Slug", version="1.0", abi=2, homepage="ftp://x",
        capabilities=["kv", "kv", "Not-A-Cap"], optionalCapabilities=["kv"],
        hooks=[{"name": "a", "kind": "sideways"}, {"name": "b", "kind": "filter", "priority": "high"},
               {"name": "b", "kind": "filter"}, {"kind": "action"}],
        jobs=[{"name": "j"}, {"name": "j", "maxRetries": 21}, {"name": "k", "maxRetries": -1}],
        limits={"memoryPages": 0, "cpu": 1},
        http={"allowedHosts": ["https://evil.example/path", "ok.example:70000"]},
        requires={"host": ">=9"},
        surprise=True,
    )
    data.pop("name")
    found = problems_of(data)
    paths = [path for path, _ in found]
    expected_paths = [
        "$.abi", "$.apiVersion", "$.capabilities[1]", "$.capabilities[2]", "$.homepage",
        "$.hooks[0].kind", "$.hooks[1].priority", "$.hooks[2]", "$.hooks[3].name",
        "$.http.allowedHosts[0]", "$.http.allowedHosts[1]",
        "$.jobs[1].maxRetries", "$.jobs[1].name", "$.jobs[2].maxRetries",
        "$.limits.cpu", "$.limits.memoryPages", "$.name", "$.optionalCapabilities[0]",
        "$.requires.host", "$.slug", "$.surprise", "$.version",
    ]
    assert sorted(set(paths)) == sorted(expected_paths)
    assert paths == sorted(paths)  # no index >= 10 here, so plain string order is the natural order
    text = dict(found)
    assert text["$.hooks[0].kind"] == 'must be one of "action", "filter"'
    assert text["$.hooks[1].priority"] == "must be an integer, not a string"
    assert "already declared at $.hooks[1]" in text["$.hooks[2]"]
    assert text["$.hooks[3].name"] == "is required"
    assert "job names must be unique" in text["$.jobs[1].name"]
    assert text["$.jobs[1].maxRetries"] == "must be at most 20"
    assert text["$.name"] == "is required"
    assert "not a known field" in text["$.surprise"]
    assert "not both" in text["$.optionalCapabilities[0]"]
    assert "repeats \"kv\"" in text["$.capabilities[1]"]
    assert "0.1.0" in text["$.requires.host"]
    assert "port must be between 1 and 65535" in text["$.http.allowedHosts[1]"]
    # Every problem is also in the exception's message and its API shape.
    with pytest.raises(ManifestError) as info:
        manifest.validate(data)
    assert info.value.message.startswith(f"manifest has {len(found)} problems: ")
    assert len(info.value.as_dict()["problems"]) == len(found)


def test_natural_sort_of_indexes() -> None:
    hooks = [{"name": f"h{i}", "kind": "action"} for i in range(12)]
    hooks[2]["kind"] = "bad"
    hooks[11]["kind"] = "bad"
    assert [p for p, _ in problems_of(valid(hooks=hooks))] == ["$.hooks[2].kind", "$.hooks[11].kind"]


@pytest.mark.parametrize("version", ["0.0.1", "1.2.3", "10.20.30", "1.0.0-alpha", "1.0.0-alpha.1",
                                     "1.0.0-0.3.7", "1.0.0-x.7.z.92", "1.0.0+20130313144700",
                                     "1.0.0-beta+exp.sha.5114f85"])
def test_semver_accepted(version: str) -> None:
    assert manifest.validate(valid(version=version)).version == version


@pytest.mark.parametrize("version", ["1", "1.2", "01.2.3", "1.2.3-", "1.2.3-01", "v1.2.3", "1.2.3.4", ""])
def test_semver_refused(version: str) -> None:
    assert [p for p, _ in problems_of(valid(version=version))] == ["$.version"]


@pytest.mark.parametrize("slug", ["ab", "seo", "seo-tools", "a1-b2", "x" * 64])
def test_slug_accepted(slug: str) -> None:
    assert manifest.validate(valid(slug=slug)).slug == slug


@pytest.mark.parametrize("slug", ["a", "Seo", "seo_tools", "-seo", "seo-", "seo--x", "1seo", "x" * 65, "sé"])
def test_slug_refused(slug: str) -> None:
    assert {p for p, _ in problems_of(valid(slug=slug))} == {"$.slug"}


def test_capability_pattern() -> None:
    assert manifest.validate(valid(capabilities=["kv", "posts.read", "http.fetch", "a.b_c.d-e"]))
    for bad in ["Posts.read", "posts.", ".x", "posts..read", "1kv", "posts.Read"]:
        assert [p for p, _ in problems_of(valid(capabilities=[bad]))] == ["$.capabilities[0]"], bad


def test_capabilities_required_but_may_be_empty() -> None:
    assert manifest.validate(valid(capabilities=[])).capabilities == ()
    assert problems_of(valid(capabilities=None)) == [("$.capabilities", "is required")]


def test_abi_is_an_enum_for_future_versions() -> None:
    assert manifest.schema()["$defs"]["abi"]["enum"] == [1]  # the one list the validator checks
    assert manifest.validate(valid(abi=1)).abi == 1
    assert problems_of(valid(abi=2)) == [("$.abi", "must be an ABI version this host supports: 1")]
    # A wrong type reports only the type, not also "not in the enum".
    assert problems_of(valid(abi="1")) == [("$.abi", "must be an integer, not a string")]
    assert problems_of(valid(abi=True)) == [("$.abi", "must be an integer, not a boolean")]


def test_requires_host_ranges() -> None:
    assert manifest.validate(valid(requires={"host": ">=0.1,<1"})).requires_host == ">=0.1,<1"
    assert manifest.validate(valid(requires={"host": "*"}))
    assert manifest.validate(valid(requires={"host": ">=0.2"}), host_version="0.2.0")
    assert manifest.validate(valid(requires={"host": ">=0.2"}), check_host=False)
    [(path, text)] = problems_of(valid(requires={"host": "about one"}), check_host=False)
    assert path == "$.requires.host" and "not a version range" in text
    assert [p for p, _ in problems_of(valid(requires={"host": "<0.1"}))] == ["$.requires.host"]


def test_range_semantics() -> None:
    assert manifest.range_satisfied(">=0.1,<1", "0.1.0")
    assert manifest.range_satisfied(">=0.1,<1", "0.9.9")
    assert not manifest.range_satisfied(">=0.1,<1", "1.0.0")
    assert not manifest.range_satisfied(">=1.0.0", "1.0.0-rc.1")  # pre-releases sort first
    assert manifest.range_satisfied("==1.0.0", "1.0.0+build")  # build metadata is ignored
    assert manifest.range_satisfied("!=0.2", "0.1.0")
    assert manifest.version_key("1.0.0-alpha") < manifest.version_key("1.0.0-alpha.1") \
        < manifest.version_key("1.0.0-beta") < manifest.version_key("1.0.0-beta.11") \
        < manifest.version_key("1.0.0-rc.1") < manifest.version_key("1.0.0")
    assert manifest.version_key("1.0.0-beta.2") < manifest.version_key("1.0.0-beta.11")
    with pytest.raises(ValueError):
        manifest.parse_range(">=banana")


def test_host_version_comes_from_the_package(monkeypatch: pytest.MonkeyPatch) -> None:
    import gonext_plugins

    monkeypatch.setattr(gonext_plugins, "__version__", "2.0.0")
    assert [p for p, _ in problems_of(valid(requires={"host": "<1"}))] == ["$.requires.host"]


@pytest.mark.parametrize("raw, expect", [
    (b"\xff\xfe{}", "is not UTF-8 text"),
    (b"{", "is not valid JSON"),
    (b"", "is not valid JSON"),
    (b"NaN", "is not valid JSON"),
    (b"\xef\xbb\xbf{}", "is not valid JSON"),  # a UTF-8 BOM is not JSON
    (b"[1, 2]", "must be an object, not an array"),
    (b"null", "must be an object, not a null"),
])
def test_unreadable_manifest(raw: bytes, expect: str) -> None:
    [(path, text)] = problems_of(raw)
    assert path == "$" and expect in text


def test_duplicate_json_keys_are_a_problem() -> None:
    text = json.dumps(valid())[:-1] + ', "slug": "other"}'
    found = problems_of(text)
    assert found == [("$", 'the key "slug" appears twice in one object; keep one')]


def test_error_carries_slug() -> None:
    with pytest.raises(ManifestError) as info:
        manifest.validate(valid(abi=7))
    assert info.value.plugin == "seo" and info.value.code == "bad_manifest"


def test_schema_is_valid_draft_2020_12() -> None:
    import jsonschema

    jsonschema.Draft202012Validator.check_schema(manifest.schema())
    assert manifest.schema()["additionalProperties"] is False


json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-10, 10) | st.floats(allow_nan=False) | st.text(max_size=4),
    lambda children: (st.lists(children, max_size=3)
                      | st.dictionaries(st.text(max_size=4), children, max_size=3)),
    max_leaves=6)
setting_keys = st.sampled_from(["type", "title", "description", "default", "enum", "minimum", "maximum",
                                "minLength", "maxLength", "format", "pattern", "secret", "unknown"])


@settings(max_examples=300, deadline=None)
@given(spec=st.dictionaries(setting_keys, json_values | st.sampled_from(["string", "integer", "text"]),
                            max_size=6))
def test_any_setting_declaration_gets_problems_never_an_exception(spec: dict[str, Any]) -> None:
    """A declared setting is the author's JSON: an unknown type with a default, an enum that is not a
    list, bounds of the wrong type... each is a listed problem (or none), never a traceback from the
    validator (``plugin pack`` printed jsonschema's UnknownType)."""
    found = manifest.problems(valid(settings={"type": "object", "properties": {"label": spec}}))
    assert all(isinstance(path, str) and isinstance(message, str) for path, message in found)


def test_an_unknown_setting_type_with_a_default_is_one_problem() -> None:
    spec = {"type": "text", "default": 5}
    found = manifest.problems(valid(settings={"type": "object", "properties": {"label": spec}}))
    assert found == [("$.settings.properties.label.type", 'must be one of "string", "integer", "number", '
                      '"boolean"')]
