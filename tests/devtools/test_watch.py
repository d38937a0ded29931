"""Ignore rules and the 200 ms trailing debounce (fake clock), plus one real-filesystem run."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest

from gonext_plugins.devtools.watch import DEBOUNCE_S, Debouncer, is_ignored, watch

ROOT = "/proj"


@pytest.mark.parametrize("path", [
    "/proj/build/plugin.wasm", "/proj/build/.zig-cache/o/x", "/proj/target/release/a.wasm",
    "/proj/node_modules/assemblyscript/x.js", "/proj/.git/index", "/proj/.git",
    "/proj/.main.zig.swp", "/proj/main.zig.swo", "/proj/main.zig~", "/proj/.#main.zig", "/proj/#main.zig#",
    "/proj/4913", "/proj/x.tmp", "/proj/.DS_Store", "/proj/sub/.DS_Store", "/proj/main.zig___jb_tmp___",
    "/proj/.zig-cache/h", "/proj/zig-out/bin/x", "/proj/sed0mOw8o",
])
def test_ignored(path: str) -> None:
    assert is_ignored(path, ROOT)


@pytest.mark.parametrize("path", [
    "/proj/main.zig", "/proj/manifest.json", "/proj/src/lib.rs", "/proj/assembly/index.ts",
    "/proj/plugin.wat",
    "/proj/builder.zig", "/proj/src/build_helpers.zig", "/proj/Cargo.toml", "/proj/sed.c",
])
def test_not_ignored(path: str) -> None:
    assert not is_ignored(path, ROOT)


def test_ignored_dirs_are_relative_to_the_root() -> None:
    # a project that itself lives under a directory called build/ is still watched
    assert not is_ignored("/home/me/build/myplugin/main.zig", "/home/me/build/myplugin")
    assert is_ignored("/home/me/build/myplugin/build/plugin.wasm", "/home/me/build/myplugin")


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_a_burst_is_one_batch_after_the_last_event() -> None:
    clock = FakeClock()  # in milliseconds: exact arithmetic
    deb = Debouncer(200, root=ROOT, clock=clock)
    for step in range(5):  # five saves 50 ms apart: 250 ms of activity
        deb.feed([f"/proj/f{step}.zig"])
        clock.now += 50
        assert deb.pop() is None  # never due while events keep coming
    clock.now += 100  # 150 ms after the last event: still waiting (trailing, not leading)
    assert deb.pop() is None
    assert deb.wait_time() == 50
    clock.now += 49
    assert deb.pop() is None
    clock.now += 1
    assert deb.pop() == {f"/proj/f{i}.zig" for i in range(5)}
    assert deb.pop() is None and deb.wait_time() is None


def test_ignored_events_do_not_arm_or_extend_the_timer() -> None:
    clock = FakeClock()
    deb = Debouncer(200, root=ROOT, clock=clock)
    assert not deb.feed(["/proj/build/plugin.wasm", "/proj/.main.zig.swp"])
    clock.now += 1000
    assert deb.pop() is None
    deb.feed(["/proj/main.zig"])
    clock.now += 150
    deb.feed(["/proj/build/plugin.wasm"])  # the build's own output must not push the rebuild back
    clock.now += 50
    assert deb.pop() == {"/proj/main.zig"}


def test_events_during_a_build_make_the_next_batch() -> None:
    clock = FakeClock()
    deb = Debouncer(200, clock=clock)
    deb.feed(["/a"], now=0)
    assert deb.pop(now=200) == {"/a"}
    deb.feed(["/b"], now=300)  # saved while /a was building
    deb.feed(["/c"], now=450)
    assert deb.pop(now=600) is None
    assert deb.pop(now=650) == {"/b", "/c"}


def test_real_filesystem_burst_is_one_rebuild(tmp_path: Path) -> None:
    (tmp_path / "build").mkdir()
    stop = threading.Event()
    batches: list[tuple[float, set[str]]] = []
    ready = threading.Event()

    def run() -> None:
        gen = watch(tmp_path, stop_event=stop, poll_ms=20)
        ready.set()
        for batch in gen:
            batches.append((time.monotonic(), batch))

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    ready.wait(5)
    time.sleep(0.3)  # let the watcher start
    for i in range(4):
        (tmp_path / f"f{i}.zig").write_text(str(i))
        (tmp_path / ".f.zig.swp").write_text(str(i))
        (tmp_path / "build" / "plugin.wasm").write_bytes(b"x" * i)
        last_write = time.monotonic()  # right after the save: the debounce runs from here, not later
        time.sleep(0.05)
    deadline = time.monotonic() + 5
    while not batches and time.monotonic() < deadline:
        time.sleep(0.02)
    time.sleep(0.4)  # no second batch should follow
    stop.set()
    thread.join(5)
    assert len(batches) == 1, batches
    when, paths = batches[0]
    assert {Path(p).name for p in paths} == {"f0.zig", "f1.zig", "f2.zig", "f3.zig"}
    assert when - last_write >= DEBOUNCE_S - 0.02  # trailing: after the last save, not the first
