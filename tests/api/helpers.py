"""Shared by the API tests: signed bundles as bytes, users with exactly one role, and the check
that an answer is in the API's one error shape."""

from __future__ import annotations

from typing import Any

from gonext_plugins import bundle

from ..conftest import guest_wasm, make_manifest

MARKER = "Marked by the gonext marker plugin"
MARKER_V2 = "Marked by the gonext marker v2.0.0"  # same length: the guest hard-codes it
CONTENT_HOOKS = [{"name": "the_content", "kind": "filter"}]


def marker_wasm(text: str = MARKER) -> bytes:
    """The admin tests' marker guest (appends a paragraph to ``the_content``), with its marker text
    swapped for another of the same length so two versions are told apart on the page."""
    import wasmtime

    from ..conftest import GUESTS

    assert len(text) == len(MARKER)
    return wasmtime.wat2wasm((GUESTS / "marker_guest.wat").read_text().replace(MARKER, text))


def signed_bundle(private_key: str, wasm: bytes | None = None, **fields: Any) -> bytes:
    """A ``.gnplugin`` as bytes, signed with ``private_key``."""
    raw = bundle.pack(make_manifest(**fields), wasm if wasm is not None else guest_wasm())
    return bundle.sign(raw, private_key)


def assert_error(response: Any, status: int, code: str | None = None) -> dict[str, Any]:
    """The response has ``status`` and the one error shape (and ``code``, when given)."""
    assert response.status_code == status, (response.status_code, getattr(response, "content", b"")[:500])
    assert response["Content-Type"].startswith("application/json"), response["Content-Type"]
    data = response.json()
    assert isinstance(data.get("error"), str) and data["error"], data
    assert isinstance(data.get("detail"), str) and data["detail"], data
    assert isinstance(data.get("problems"), list), data
    assert "Traceback" not in response.content.decode(), data
    if code is not None:
        assert data["error"] == code, data
    return data
