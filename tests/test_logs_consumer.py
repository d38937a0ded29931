"""The log WebSocket through the real ASGI stack (origin check, session auth, URL router) with
Channels' ``WebsocketCommunicator`` and the in-memory layer. Sync tests drive each async scenario
with ``async_to_sync``; database work inside goes through ``database_sync_to_async``."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest
from asgiref.sync import async_to_sync
from channels.db import database_sync_to_async
from channels.layers import channel_layers
from channels.testing import WebsocketCommunicator
from django.contrib.auth.models import User
from django.db import connection
from django.test import Client

from gonext_plugins import logs
from gonext_plugins.consumers import CLOSE_TRY_AGAIN
from gonext_plugins.registry import LoadedPlugin

from .test_logs import clean_writer, install_flood, staff  # noqa: F401  (fixture)

# No real commits needed: install_flood runs the lifecycle's on-commit work through captured callbacks.
pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def fresh_layer() -> Iterator[None]:
    """A new in-memory layer per test: groups from another test's event loop are gone."""
    channel_layers.backends.clear()
    yield
    channel_layers.backends.clear()
    logs.writer.consumer_loop = None


@pytest.fixture
def flood(make_bundle: Any) -> LoadedPlugin:
    loaded = install_flood(make_bundle)
    logs.flush()  # the "activated" line
    return loaded


def cookie_for(user: User | None) -> bytes:
    if user is None:
        return b""
    client = Client()
    client.force_login(user)
    return f"sessionid={client.cookies['sessionid'].value}".encode()


def communicator(cookie: bytes, path: str = "/_/plugins/dev/logs/demo/") -> WebsocketCommunicator:
    from project.asgi import application

    headers = [(b"origin", b"http://testserver"), (b"host", b"testserver")]
    if cookie:
        headers.append((b"cookie", cookie))
    return WebsocketCommunicator(application, path, headers=headers)


def run(scenario: Callable[[], Any]) -> Any:
    return async_to_sync(scenario)()


def call_and_flush(loaded: LoadedPlugin, hook: str, *args: Any) -> None:
    loaded.invoke("action", hook, *args)
    assert logs.flush()


async def refusal(comm: WebsocketCommunicator) -> int | None:
    connected, _ = await comm.connect()
    assert connected  # accepted, then closed with a code the browser can read
    closed = await comm.receive_output(timeout=5)
    assert closed["type"] == "websocket.close"
    return closed.get("code")


async def drain(comm: WebsocketCommunicator) -> list[dict[str, Any]]:
    """Every message already sent (nothing more within 0.3 s)."""
    out = []
    while not await comm.receive_nothing(timeout=0.3):
        out.append(await comm.receive_json_from())
    return out


def test_refusals(flood: LoadedPlugin) -> None:
    anonymous = b""
    no_perm = cookie_for(staff("noperm", perm=False))
    user = staff("notstaff")
    user.is_staff = False
    user.save()
    not_staff = cookie_for(user)
    allowed = staff()
    allowed_cookie = cookie_for(allowed)

    async def scenario() -> None:
        assert await refusal(communicator(anonymous)) == 4403
        assert await refusal(communicator(no_perm)) == 4403
        assert await refusal(communicator(not_staff)) == 4403
        assert await refusal(communicator(allowed_cookie, "/_/plugins/dev/logs/nope/")) == 4404
        from project.asgi import application

        evil = WebsocketCommunicator(application, "/_/plugins/dev/logs/demo/",
                                     headers=[(b"origin", b"http://evil.example"),
                                              (b"cookie", allowed_cookie)])
        connected, _ = await evil.connect()
        assert not connected  # AllowedHostsOriginValidator: another site's page may not listen in

    run(scenario)


def test_backlog_then_live_in_order(flood: LoadedPlugin) -> None:
    user = cookie_for(staff())
    call_and_flush(flood, "levels")

    async def scenario() -> None:
        comm = communicator(user)
        connected, _ = await comm.connect()
        assert connected
        backlog = await comm.receive_json_from(timeout=5)
        assert backlog["type"] == "backlog" and backlog["plugin"] == "demo"
        assert [line["message"] for line in backlog["lines"]] == [
            "activated version 1.0.0 by tests", "debug line", "info line", "warning line", "error line"]
        ids = [line["id"] for line in backlog["lines"]]
        assert ids == sorted(ids)
        await database_sync_to_async(call_and_flush)(flood, "flood", 3)
        await database_sync_to_async(call_and_flush)(flood, "the_content")
        live = await drain(comm)
        assert all(msg["type"] == "lines" for msg in live)
        lines = [line for msg in live for line in msg["lines"]]
        assert [line["message"] for line in lines] == ["flood line"] * 3 + ["called the_content"]
        assert lines[0]["id"] > ids[-1]
        assert set(lines[0]) == {"id", "time", "plugin", "version", "level", "message", "source"}
        await comm.disconnect()

    run(scenario)


def test_a_batch_racing_the_backlog_is_sent_once(flood: LoadedPlugin) -> None:
    """A batch stored before the backlog query but fanned out after it is deduplicated by id."""
    user = cookie_for(staff())
    call_and_flush(flood, "levels")

    async def scenario() -> None:
        comm = communicator(user)
        await comm.connect()
        backlog = await comm.receive_json_from(timeout=5)
        from channels.layers import get_channel_layer

        lines = backlog["lines"][-2:]  # as if the writer sent them only now
        await get_channel_layer().group_send(logs.group_name("demo"), {"type": "log.lines", "lines": lines})
        assert await comm.receive_nothing(timeout=0.3)
        await comm.disconnect()

    run(scenario)


def test_level_and_text_filters(flood: LoadedPlugin) -> None:
    user = cookie_for(staff())
    call_and_flush(flood, "levels")

    async def scenario() -> None:
        comm = communicator(user, "/_/plugins/dev/logs/demo/?min_level=2")
        await comm.connect()
        backlog = await comm.receive_json_from(timeout=5)
        assert [line["message"] for line in backlog["lines"]] == ["warning line", "error line"]
        await database_sync_to_async(call_and_flush)(flood, "levels")
        [live] = await drain(comm)
        assert [line["level"] for line in live["lines"]] == [2, 3]

        await comm.send_json_to({"min_level": 0, "filter": "INFO"})
        replay = await comm.receive_json_from(timeout=5)
        assert replay["type"] == "backlog" and replay["min_level"] == 0 and replay["filter"] == "info"
        assert [line["message"] for line in replay["lines"]] == ["info line", "info line"]
        await database_sync_to_async(call_and_flush)(flood, "levels")
        await database_sync_to_async(call_and_flush)(flood, "flood", 2)
        [live] = await drain(comm)
        assert [line["message"] for line in live["lines"]] == ["info line"]

        await comm.send_json_to({"min_level": 3, "filter": ""})
        replay = await comm.receive_json_from(timeout=5)
        assert [line["message"] for line in replay["lines"]] == ["error line"] * 3
        await comm.send_json_to({"min_level": "junk", "filter": 7})  # ignored, not a crash
        replay = await comm.receive_json_from(timeout=5)
        assert replay["min_level"] == 3
        await comm.disconnect()

    run(scenario)


def test_rate_limit_report_reaches_the_client(flood: LoadedPlugin, settings: Any) -> None:
    settings.GONEXT_PLUGINS = {**settings.GONEXT_PLUGINS, "LOG_RATE": 0.001, "LOG_BURST": 10}
    user = cookie_for(staff())

    async def scenario() -> None:
        comm = communicator(user)
        await comm.connect()
        await comm.receive_json_from(timeout=5)
        await database_sync_to_async(call_and_flush)(flood, "flood", 500)
        lines = [line for msg in await drain(comm) for line in msg["lines"]]
        assert [line["message"] for line in lines[:10]] == ["flood line"] * 10
        [report] = lines[10:]
        assert report["dropped"] == 490 and report["level"] == 2 and report["source"] == "host"
        assert report["message"] == "490 lines dropped: over the log rate limit"
        await comm.disconnect()

    run(scenario)


def test_lines_stored_by_another_process_arrive_with_the_in_memory_layer(flood: LoadedPlugin) -> None:
    """The job worker is another process: with the in-memory layer its lines reach the page only
    through the backlog, which the consumer reads again every POLL_SECONDS."""
    from django.utils import timezone

    from gonext_plugins.consumers import POLL_SECONDS
    from gonext_plugins.models import PluginLogEntry

    user = cookie_for(staff())

    def store_as_the_worker_would() -> None:
        PluginLogEntry.objects.create(time=timezone.now(), plugin="demo", version="1.0.0", level=1,
                                      message="job demo.work finished", source="host")

    async def scenario() -> None:
        comm = communicator(user)
        await comm.connect()
        await comm.receive_json_from(timeout=5)  # the backlog
        await database_sync_to_async(store_as_the_worker_would)()
        message = await comm.receive_json_from(timeout=POLL_SECONDS * 3)
        assert message["type"] == "lines"
        assert [line["message"] for line in message["lines"]] == ["job demo.work finished"]
        assert await comm.receive_nothing(timeout=POLL_SECONDS * 1.5)  # sent once
        await comm.disconnect()

    run(scenario)


def test_a_database_outage_closes_the_stream_with_try_again(flood: LoadedPlugin) -> None:
    """The plugin's table is unreachable (renamed inside the test's transaction, so the driver
    raises a real ``OperationalError``): the stream closes with 1013 "try again later", which the
    page answers by reconnecting, instead of dying with a traceback."""
    cookie = cookie_for(staff())
    with connection.cursor() as cursor:
        cursor.execute('ALTER TABLE "gonext_plugins_plugin" RENAME TO "gonext_plugins_plugin_gone"')

    async def scenario() -> int | None:
        return await refusal(communicator(cookie))

    assert run(scenario) == CLOSE_TRY_AGAIN == 1013


def test_a_websocket_opened_during_a_database_outage_is_refused_with_try_again(flood: LoadedPlugin) -> None:
    """The session table is unreachable (renamed inside the test's transaction: a real
    ``OperationalError``), so Channels' auth middleware fails before the consumer runs: the
    handshake still ends in a clean 1013 "try again later" instead of a server error."""
    cookie = cookie_for(staff())
    with connection.cursor() as cursor:
        cursor.execute('ALTER TABLE "django_session" RENAME TO "django_session_gone"')

    async def scenario() -> int | None:
        return await refusal(communicator(cookie))

    assert run(scenario) == CLOSE_TRY_AGAIN
