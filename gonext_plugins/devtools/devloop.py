"""The plugin author's loop behind ``manage.py plugin dev``: detect, build, validate, upload, diff;
then watch and do it again on every save; optionally tail the plugin's log stream.

Why these rules: the first cycle failing means the setup is wrong (exit 1, so scripts notice);
once the loop runs, an error is just the author's current edit, so it is printed and the loop
waits for the next save. Ctrl-C is the normal way out (exit 0). Each phase prints one timestamped
line so the author sees where the seconds go. Colours are ANSI, off when the output is not a
terminal or ``NO_COLOR`` is set. No Django here: the management command only parses options.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import sys
import threading
import time
import urllib.parse
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, TextIO

from gonext_plugins.devtools import builders, capcheck, capdiff, hookcheck, upload
from gonext_plugins.devtools import lang as langs
from gonext_plugins.devtools import watch as watching
from gonext_plugins.devtools.extras import author_module
from gonext_plugins.errors import BuildError, ManifestError, PluginError

OK, FAILED = 0, 1
LOGS_PATH = "/_/plugins/dev/logs/{slug}/"
LEVELS = {0: "DEBUG", 1: "INFO", 2: "WARN", 3: "ERROR"}
_COLORS = {"DEBUG": "2", "INFO": "36", "WARN": "33", "ERROR": "1;31", "ok": "32", "error": "1;31",
           "+": "32", "-": "31", "=": "2", "phase": "1"}


@dataclass
class DevOptions:
    """What ``plugin dev`` was asked to do (see the command's ``--help``)."""

    project_dir: Path
    host: str = upload.DEFAULT_HOST
    token: str | None = None
    watch: bool = True
    build_only: bool = False  # one build + validate, no upload, no watching, no logs
    lang: str = langs.AUTO
    logs: bool = False
    optimize: str | None = None
    color: bool | None = None  # None: when the output is a terminal and NO_COLOR is unset


def use_color(stream: TextIO, forced: bool | None = None) -> bool:
    if forced is not None:
        return forced
    if os.environ.get("NO_COLOR"):
        return False
    isatty = getattr(stream, "isatty", None)
    return bool(isatty and isatty())


class Console:
    """Timestamped, optionally coloured lines; one lock so the log tail never splits a line."""

    def __init__(self, out: TextIO, color: bool, clock: Callable[[], float] = time.time) -> None:
        self.out = out
        self.color = color
        self.clock = clock
        self.lock = threading.Lock()

    def paint(self, text: str, style: str) -> str:
        code = _COLORS.get(style)
        return f"\033[{code}m{text}\033[0m" if self.color and code else text

    def stamp(self) -> str:
        return datetime.fromtimestamp(self.clock()).strftime("%H:%M:%S.%f")[:-3]

    def line(self, label: str, text: str, style: str = "phase") -> None:
        """``HH:MM:SS.mmm label    text``; further lines of ``text`` are indented under it."""
        first, *rest = text.splitlines() or [""]
        lines = [f"{self.stamp()} {self.paint(f'{label:<8}', style)} {first}"]
        self._write(lines + [f"{'':<22}{row}" for row in rest])

    def more(self, text: str) -> None:
        """A continuation line (no timestamp), aligned with the text of a :meth:`line`."""
        self._write([f"{'':<22}{text}"])

    def _write(self, lines: list[str]) -> None:
        with self.lock:
            self.out.write("\n".join(lines) + "\n")
            with contextlib.suppress(Exception):
                self.out.flush()


def describe_error(exc: BaseException) -> str:
    """An error as the author should read it: every manifest problem, the compiler's output."""
    if isinstance(exc, ManifestError):
        return f"manifest.json has {len(exc.problems)} problem(s):" + "".join(
            f"\n  {path}: {text}" for path, text in exc.problems)
    if isinstance(exc, PluginError):
        return f"{exc.code}: {exc.message}"
    return f"{type(exc).__name__}: {exc}"


class DevLoop:
    """Run the loop; :meth:`run` returns the exit status. Collaborators are injectable for tests."""

    def __init__(self, options: DevOptions, out: TextIO | None = None, *,
                 uploader: Callable[..., dict[str, Any]] = upload.install,
                 catalogue: Callable[..., list[Any]] = hookcheck.fetch_catalogue,
                 host_functions: Callable[..., dict[str, str]] = capcheck.fetch_functions,
                 watcher: Callable[..., Iterable[set[str]]] = watching.watch,
                 stop_event: threading.Event | None = None, clock: Callable[[], float] = time.time) -> None:
        self.options = options
        self.out = out or sys.stdout
        self.console = Console(self.out, use_color(self.out, options.color), clock)
        self.uploader = uploader
        self.catalogue = catalogue
        self.host_functions = host_functions
        self.watcher = watcher
        self.stop_event = stop_event or threading.Event()
        self.previous: Any = None  # the manifest of the last successful cycle
        self.slug: str | None = None
        self.cycles = 0
        self.failures = 0
        self._tail: LogTail | None = None

    # --- one cycle --------------------------------------------------------------------------------

    def cycle(self, changed: set[str] | None = None) -> bool:
        """detect -> build -> validate -> upload -> diff. Prints everything; returns success."""
        self.cycles += 1
        opts = self.options
        project = Path(opts.project_dir).resolve()
        c = self.console
        if changed:
            names = sorted(os.path.relpath(p, project) for p in changed)
            shown = ", ".join(names[:5]) + (f" and {len(names) - 5} more" if len(names) > 5 else "")
            c.line("change", shown)
        phase = "detect"
        try:
            language = langs.detect(project, opts.lang)
            found = langs.markers(project).get(language, []) if opts.lang == langs.AUTO else ["--lang"]
            c.line("detect", f"{language} ({', '.join(found)})")
            phase = "build"
            built = builders.compile_project(project, language, optimize=opts.optimize)
            size = built.wasm_path.stat().st_size
            rel = os.path.relpath(built.wasm_path, project)
            extra = " (unchanged, cached)" if built.cached else ""
            smap = ", source map" if built.map_path else ""
            c.line("build", f"{rel} {size:,} bytes{smap} in {built.seconds:.2f} s{extra}")
            phase = "validate"
            started = time.perf_counter()
            # Before an upload the site compiles and checks the module itself: validating here
            # without compiling saves a second compile of every edit (--build-only loads it).
            checked = builders.validate(project, built.wasm_path, load=opts.build_only)
            m = checked.manifest
            imports = ", ".join(checked.imports) or "none"
            what = "module loads" if opts.build_only else "module valid, the site compiles it"
            c.line("validate", f"manifest {m.slug} {m.version} ok; {what} (imports: {imports}) "
                               f"in {time.perf_counter() - started:.2f} s")
            self.slug = m.slug
            if not opts.build_only:
                phase = "upload"
                started = time.perf_counter()
                answer = self.uploader(opts.host, checked.manifest_bytes, checked.wasm, token=opts.token)
                c.line("upload", f"{m.slug} {m.version} -> {upload.install_url(opts.host)} in "
                                 f"{time.perf_counter() - started:.2f} s{_summary(answer)}")
                self.check_hooks(m)
                self.check_capabilities(m, checked.wasm)
            delta = capdiff.diff(self.previous, m)
            head, *rows = delta.lines()
            c.line("diff", head)
            for row in rows:
                sign = row.strip()[:1]
                c.more(c.paint(row, sign) if sign in "+-=" else row)
            self.previous = m
            return True
        except Exception as exc:  # an author's broken edit must never end the loop
            self.failures += 1
            c.line(phase, describe_error(exc), style="error")
            return False

    def check_hooks(self, manifest: Any) -> None:
        """Warn about manifest hooks the dev site does not offer (its catalogue, read from its API).
        Only a warning: the site may fire a hook it did not declare; an unreadable catalogue is
        said once per cycle and checks nothing."""
        c = self.console
        try:
            offered = self.catalogue(self.options.host, token=self.options.token)
        except PluginError as exc:
            c.line("hooks", f"not checked: {exc.message}", style="WARN")
            return
        problems = hookcheck.warnings(manifest, offered)
        if not problems:
            count = len(hookcheck.manifest_hooks(manifest))
            c.line("hooks", f"all {count} offered by the site" if count else "none subscribed")
            return
        c.line("hooks", f"{len(problems)} the site does not offer (they will not run unless it fires "
                        "them anyway):", style="WARN")
        for problem in problems:
            c.more(c.paint(f"! {problem}", "WARN"))

    def check_capabilities(self, manifest: Any, wasm: bytes) -> None:
        """Warn about capabilities the module seems to use (host function names in its data) that
        the manifest does not ask for: their calls would be denied. Best effort, and said so."""
        c = self.console
        try:
            functions = self.host_functions(self.options.host, token=self.options.token)
        except PluginError as exc:
            c.line("caps", f"not checked: {exc.message}", style="WARN")
            return
        problems = capcheck.warnings(manifest, wasm, functions)
        if not problems:
            used = capcheck.used_functions(wasm, functions)
            c.line("caps", f"the manifest asks for every capability the module names ({len(used)} host "
                           "function(s) found)")
            return
        c.line("caps", f"{len(problems)} used but not asked for (calls will be denied; "
                       f"{capcheck.BEST_EFFORT}):", style="WARN")
        for problem in problems:
            c.more(c.paint(f"! {problem}", "WARN"))

    # --- the loop ---------------------------------------------------------------------------------

    def run(self) -> int:
        """The whole loop; 0 on success or Ctrl-C, 1 when the first cycle fails."""
        opts = self.options
        try:
            if not self.cycle():
                return FAILED
            if opts.build_only:
                return OK
            if opts.logs and self.slug:
                self._tail = LogTail(opts.host, self.slug, opts.token, self.console, self.stop_event)
                self._tail.start()
            if opts.watch:
                root = Path(opts.project_dir).resolve()
                self.console.line("watch", f"{root} (Ctrl-C to stop)")
                for batch in self.watcher(root, stop_event=self.stop_event):
                    self.cycle(batch)
                    if self.stop_event.is_set():
                        break
            elif self._tail is not None:
                self.console.line("logs", "tailing (Ctrl-C to stop)")
                while not self.stop_event.wait(0.2):
                    pass
            return OK
        except KeyboardInterrupt:
            self.console.line("stop", "interrupted; bye")
            return OK
        finally:
            self.stop_event.set()
            if self._tail is not None:
                self._tail.join(2)


def _summary(answer: dict[str, Any]) -> str:
    """A short echo of the site's answer (whatever keys the dev endpoint sends)."""
    keys = ("status", "action", "state")
    parts = [f"{k} {answer[k]}" for k in keys if isinstance(answer.get(k), str | int)]
    if isinstance(answer.get("detail"), str):
        parts.append(answer["detail"])
    return f" ({'; '.join(parts)})" if parts else ""


# --- the log tail ------------------------------------------------------------------------------


def logs_url(host: str, slug: str, token: str | None = None) -> str:
    """``ws(s)://host/_/plugins/dev/logs/<slug>/``, with ``?token=`` when given.

    The token goes in the query string *and* an ``Authorization`` header: the site's consumer
    reads the header, and the query parameter only in dev mode (URLs end up in access logs; a
    browser, which cannot set headers on a WebSocket, uses its staff session instead).
    """
    parsed = urllib.parse.urlsplit(host if "://" in host else f"http://{host}")
    scheme = "wss" if parsed.scheme in ("https", "wss") else "ws"
    query = urllib.parse.urlencode({"token": token}) if token else ""
    return urllib.parse.urlunsplit((scheme, parsed.netloc, LOGS_PATH.format(slug=slug), query, ""))


def format_log_line(record: dict[str, Any], paint: Callable[[str, str], str]) -> str:
    """One log record (``time, plugin, version, level, message, source``) as a terminal line."""
    level = record.get("level")
    name = LEVELS.get(level, str(level).upper()) if isinstance(level, int) else str(level or "INFO").upper()
    name = {"WARNING": "WARN"}.get(name, name)
    when = str(record.get("time", ""))
    with contextlib.suppress(ValueError):
        when = datetime.fromisoformat(when).astimezone().strftime("%H:%M:%S.%f")[:-3]
    source = record.get("source")
    version = record.get("version")
    tail = " ".join(x for x in (f"v{version}" if version else "", f"[{source}]" if source else "") if x)
    text = f"{when} {paint(f'{name:<5}', name)} {record.get('message', '')}"
    trap = record.get("trap")
    if isinstance(trap, dict) and trap.get("frames"):
        text += "".join(f"\n    at {f.get('function')}  {f.get('location')}" for f in trap["frames"])
    return f"{text}  {paint(tail, 'DEBUG')}" if tail else text


def records(message: Any) -> Iterator[dict[str, Any]]:
    """Log records in a stream message: ``{"type": "backlog"|"lines", "lines": [...]}`` or one record."""
    if isinstance(message, dict) and isinstance(message.get("lines"), list):
        yield from (r for r in message["lines"] if isinstance(r, dict))
    elif isinstance(message, dict) and "message" in message:
        yield message


class LogTail(threading.Thread):
    """Tails the plugin's WebSocket log stream into the console until ``stop`` is set; reconnects."""

    def __init__(self, host: str, slug: str, token: str | None, console: Console,
                 stop: threading.Event) -> None:
        super().__init__(name=f"gonext-logs-{slug}", daemon=True)
        self.url = logs_url(host, slug, token)
        # Channels' AllowedHostsOriginValidator refuses a handshake without an Origin; this client is
        # the site's own tool, so it says it comes from the site (the check is against other sites).
        parsed = urllib.parse.urlsplit(self.url)
        self.origin: Any = f"{'https' if parsed.scheme == 'wss' else 'http'}://{parsed.netloc}"
        self.token = token
        self.console = console
        self.stop = stop
        self.connected = threading.Event()

    def run(self) -> None:
        with contextlib.suppress(Exception):
            asyncio.run(self._main())

    async def _main(self) -> None:
        websockets: Any = author_module("websockets", "plugin dev --logs")  # an optional package

        headers = {"Authorization": f"Token {self.token}"} if self.token else None
        delay, said = 0.5, ""
        shown = self.url.split("?", 1)[0]
        while not self.stop.is_set():
            try:
                async with websockets.connect(self.url, additional_headers=headers, open_timeout=5,
                                              origin=self.origin) as ws:
                    self.console.line("logs", f"connected to {shown}")
                    self.connected.set()
                    delay, said = 0.5, ""
                    while not self.stop.is_set():
                        try:
                            raw = await asyncio.wait_for(ws.recv(), 0.25)
                        except TimeoutError:
                            continue
                        with contextlib.suppress(ValueError):
                            for record in records(json.loads(raw)):
                                text = format_log_line(record, self.console.paint)
                                self.console.line("log", text, style="")
            except Exception as exc:
                code = getattr(getattr(exc, "rcvd", None), "code", None)
                why = {4403: "forbidden: pass --token of a staff user with the view_plugin_logs permission",
                       4404: "no such plugin on the site (yet)"}.get(code or 0,
                                                                     f"{type(exc).__name__}: {exc}")
                if why != said:
                    self.console.line("logs", f"{shown}: {why}; retrying", style="error")
                    said = why
            if self.stop.wait(delay):
                return
            delay = min(delay * 2, 5.0)


__all__ = ["BuildError", "DevLoop", "DevOptions", "LogTail", "format_log_line", "logs_url"]
