"""The upload client's exact request (multipart shape, headers) and how it reads refusals."""

from __future__ import annotations

import email.parser
import email.policy
import socket

import pytest

from gonext_plugins.devtools import upload
from gonext_plugins.devtools.upload import UploadError

MANIFEST = b'{"slug": "demo", "version": "1.0.0"}'
WASM = b"\0asm\x01\0\0\0" + bytes(range(256))  # binary, with CR/LF and NUL bytes


def test_exact_multipart_shape(recording_server) -> None:  # type: ignore[no-untyped-def]
    answer = upload.install(recording_server.url, MANIFEST, WASM, token="s3cret", boundary="BOUNDARY42")
    assert answer == {"status": "installed"}
    (req,) = recording_server.requests
    assert req.method == "POST" and req.path == "/_/plugins/dev/install"
    assert req.headers["Content-Type"] == "multipart/form-data; boundary=BOUNDARY42"
    assert req.headers["Authorization"] == "Token s3cret"
    assert req.headers["Accept"] == "application/json"
    assert int(req.headers["Content-Length"]) == len(req.body)
    assert req.body == (
        b"--BOUNDARY42\r\n"
        b'Content-Disposition: form-data; name="manifest"; filename="manifest.json"\r\n'
        b"Content-Type: application/json\r\n\r\n" + MANIFEST + b"\r\n"
        b"--BOUNDARY42\r\n"
        b'Content-Disposition: form-data; name="wasm"; filename="plugin.wasm"\r\n'
        b"Content-Type: application/wasm\r\n\r\n" + WASM + b"\r\n"
        b"--BOUNDARY42--\r\n"
    )


def test_a_standard_parser_reads_the_parts(recording_server) -> None:  # type: ignore[no-untyped-def]
    upload.install(recording_server.url + "/", MANIFEST, WASM)  # trailing slash on the host is fine
    (req,) = recording_server.requests
    assert "Authorization" not in req.headers
    raw = f"Content-Type: {req.headers['Content-Type']}\r\n\r\n".encode() + req.body
    message = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(raw)
    parts = {p.get_param("name", header="content-disposition"): p for p in message.iter_parts()}
    assert set(parts) == {"manifest", "wasm"}
    assert parts["manifest"].get_content_type() == "application/json"
    assert parts["wasm"].get_content_type() == "application/wasm"
    assert parts["wasm"].get_filename() == "plugin.wasm"
    assert parts["wasm"].get_payload(decode=True) == WASM
    assert parts["manifest"].get_payload(decode=True) == MANIFEST


def test_random_boundaries_differ() -> None:
    parts = [upload.Part("a", "a.json", "application/json", b"{}")]
    assert upload.encode_multipart(parts)[1] != upload.encode_multipart(parts)[1]
    with pytest.raises(ValueError):
        upload.encode_multipart([upload.Part("a", "a.json", "application/json", b"--XX--")], "XX")


def test_api_error_shape_becomes_a_typed_error(recording_server) -> None:  # type: ignore[no-untyped-def]
    recording_server.status = 400
    recording_server.reply = {"error": "bad_manifest", "detail": "manifest has 2 problems",
                              "problems": [{"path": "$.slug", "message": "is required"},
                                           {"path": "$.version", "message": "must be a semantic version"}]}
    with pytest.raises(UploadError) as info:
        upload.install(recording_server.url, MANIFEST, WASM)
    exc = info.value
    assert (exc.status, exc.error, exc.code, exc.detail) == (400, "bad_manifest", "bad_manifest",
                                                              "manifest has 2 problems")
    assert exc.problems[0] == {"path": "$.slug", "message": "is required"}
    assert "$.slug: is required" in exc.message and "$.version: must be a semantic version" in exc.message
    assert exc.as_dict()["error"] == "bad_manifest"
    assert "bad_manifest" not in exc.message  # the code is printed once, before the message


def test_a_refusal_an_author_meets_first_says_what_to_do(recording_server) -> None:  # type: ignore[no-untyped-def]
    recording_server.status = 401
    recording_server.reply = {"error": "not_authenticated",
                              "detail": "Authentication credentials were not provided.", "problems": []}
    with pytest.raises(UploadError) as info:
        upload.install(recording_server.url, MANIFEST, WASM)
    assert info.value.code == "not_authenticated"
    assert info.value.message.startswith("Authentication credentials were not provided. (set GONEXT_TOKEN")


@pytest.mark.parametrize(("status", "hint"), [(404, "dev mode"), (403, "--token"), (500, "HTTP 500")])
def test_non_json_refusals(recording_server, status: int, hint: str) -> None:  # type: ignore[no-untyped-def]
    recording_server.status = status
    recording_server.reply = b"<html>nope</html>"
    recording_server.content_type = "text/html"
    with pytest.raises(UploadError) as info:
        upload.install(recording_server.url, MANIFEST, WASM)
    assert info.value.status == status and hint in info.value.message
    assert info.value.error == f"http_{status}"


def test_unreachable_host() -> None:
    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    with pytest.raises(UploadError) as info:
        upload.install(f"127.0.0.1:{port}", MANIFEST, WASM, timeout=5)
    assert info.value.status is None and "cannot reach" in info.value.message


def test_install_url() -> None:
    assert upload.install_url("http://h:8000/") == "http://h:8000/_/plugins/dev/install"
    assert upload.install_url("h:8000") == "http://h:8000/_/plugins/dev/install"
