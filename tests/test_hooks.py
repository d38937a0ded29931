"""The hook bus, tested against WordPress's own action and filter test cases.

Ported from WordPress's PHPUnit suite (tests/phpunit/tests/actions.php, filters.php and
hooks/*.php); each test names the case it ports. Hook names are unique per test, as WordPress's
tests use ``__FUNCTION__``. The ``all`` hook and ``accepted_args`` are PHP mechanics with no
counterpart here (Python callbacks take ``*args``).
"""

from __future__ import annotations

import asyncio
import time

import pytest
from django.dispatch import receiver
from django.template import Context, Template

from gonext_plugins import hooks

# The bus checks the plugin generation in the database (at most once per SYNC_INTERVAL).
pytestmark = pytest.mark.django_db


class MockAction:
    """WordPress's MockAction: counts calls and records arguments."""

    def __init__(self) -> None:
        self.events: list[tuple[str, tuple[object, ...]]] = []

    def action(self, *args: object) -> None:
        self.events.append(("action", args))

    def action2(self, *args: object) -> None:
        self.events.append(("action2", args))

    def filter(self, value: object, *args: object) -> object:
        self.events.append(("filter", (value, *args)))
        return value

    def filter_append(self, value: object, *args: object) -> object:
        self.events.append(("filter_append", (value, *args)))
        return f"{value}_append"

    @property
    def call_count(self) -> int:
        return len(self.events)


@pytest.fixture
def name(request: pytest.FixtureRequest) -> str:
    return f"test:{request.node.name}"


@pytest.fixture(autouse=True)
def _clean(name: str):  # type: ignore[no-untyped-def]
    yield
    hooks.remove_all_filters(name)


# --- actions.php ------------------------------------------------------------------------------


def test_simple_action(name: str) -> None:
    a = MockAction()
    hooks.add_action(name, a.action)
    hooks.do_action(name)
    assert a.call_count == 1 and a.events[0] == ("action", ())


def test_remove_action(name: str) -> None:
    a = MockAction()
    hooks.add_action(name, a.action)
    hooks.do_action(name)
    assert a.call_count == 1
    assert hooks.remove_action(name, a.action) is True
    hooks.do_action(name)
    assert a.call_count == 1
    assert hooks.remove_action(name, a.action) is False


def test_has_action(name: str) -> None:
    a = MockAction()
    assert hooks.has_action(name, a.action) is False and hooks.has_action(name) is False
    hooks.add_action(name, a.action)
    assert hooks.has_action(name, a.action) == 10 and hooks.has_action(name) is True
    hooks.remove_action(name, a.action)
    assert hooks.has_action(name, a.action) is False and hooks.has_action(name) is False


def test_multiple_actions(name: str) -> None:
    a, b = MockAction(), MockAction()
    hooks.add_action(name, a.action)
    hooks.add_action(name, b.action)
    hooks.do_action(name)
    assert (a.call_count, b.call_count) == (1, 1)


def test_action_args(name: str) -> None:
    a, b = MockAction(), MockAction()
    hooks.add_action(name, a.action)
    hooks.add_action(name, b.action)
    hooks.do_action(name, "arg1", "arg2")
    assert a.events == [("action", ("arg1", "arg2"))] and b.events == a.events


def test_action_priority(name: str) -> None:
    order: list[str] = []
    hooks.add_action(name, lambda: order.append("10"), 10)
    hooks.add_action(name, lambda: order.append("9"), 9)
    hooks.do_action(name)
    assert order == ["9", "10"]


def test_equal_priorities_run_in_insertion_order(name: str) -> None:
    order: list[int] = []
    for i in range(5):
        hooks.add_action(name, lambda i=i: order.append(i), 7)
    hooks.add_action(name, lambda: order.append(-1), 3)
    hooks.do_action(name)
    assert order == [-1, 0, 1, 2, 3, 4]


def test_did_action(name: str) -> None:
    other = name + ":2"
    hooks.do_action(name)
    assert hooks.did_action(name) == 1 and hooks.did_action(other) == 0
    for _ in range(3):
        hooks.do_action(other)
    assert hooks.did_action(name) == 1 and hooks.did_action(other) == 3


def test_action_self_removal(name: str) -> None:
    calls: list[int] = []

    def once() -> None:
        calls.append(1)
        hooks.remove_action(name, once)

    hooks.add_action(name, once)
    hooks.do_action(name)
    hooks.do_action(name)
    assert calls == [1]


def test_action_recursion(name: str) -> None:
    a, b = MockAction(), MockAction()
    recursing = [False]

    def action_that_causes_recursion(hook_name: str) -> None:
        if not recursing[0]:
            recursing[0] = True
            hooks.do_action(hook_name, hook_name)
        recursing[0] = False

    hooks.add_action(name, a.action, 11)
    hooks.add_action(name, b.action, 13)
    hooks.add_action(name, action_that_causes_recursion, 12)
    hooks.do_action(name, name)
    assert (a.call_count, b.call_count) == (2, 2)


def test_action_callback_manipulation_while_running(name: str) -> None:
    a, b, c, d, e = (MockAction() for _ in range(5))

    def manipulate(hook_name: str, mocks: list[MockAction]) -> None:
        hooks.remove_action(hook_name, mocks[1].action, 12)
        hooks.add_action(hook_name, mocks[2].action, 12)
        hooks.add_action(hook_name, mocks[3].action, 13)
        hooks.add_action(hook_name, mocks[4].action, 10)

    hooks.add_action(name, a.action, 11)
    hooks.add_action(name, manipulate, 12)
    hooks.add_action(name, b.action, 12)
    for _ in range(2):
        hooks.do_action(name, name, [a, b, c, d, e])
    assert a.call_count == 2, "a runs twice"
    assert b.call_count == 1, "b runs once: removed during the run, but its priority had begun"
    assert c.call_count == 1, "c runs once: added at the running priority, so it waits a run"
    assert d.call_count == 2, "d runs twice: added at a later priority, so it joins this run"
    assert e.call_count == 1, "e runs once: added at an earlier priority"


def test_removing_a_later_priority_stops_it_in_this_run(name: str) -> None:
    late = MockAction()
    hooks.add_action(name, lambda: hooks.remove_action(name, late.action, 20), 10)
    hooks.add_action(name, late.action, 20)
    hooks.do_action(name)
    assert late.call_count == 0


def test_action_callback_representations(name: str) -> None:
    """Bound methods of equal objects are distinct; the same bound method is one callback."""
    a, b = MockAction(), MockAction()
    hooks.add_action(name, a.action)
    hooks.add_action(name, a.action)  # duplicate: registered once
    hooks.add_action(name, b.action)
    hooks.add_action(name, a.action2)
    hooks.do_action(name)
    assert a.events == [("action", ()), ("action2", ())] and b.call_count == 1


def test_same_callback_at_two_priorities_runs_twice(name: str) -> None:
    a = MockAction()
    hooks.add_action(name, a.action, 10)
    hooks.add_action(name, a.action, 20)
    hooks.do_action(name)
    assert a.call_count == 2
    assert hooks.has_action(name, a.action) == 10


def test_current_action_and_doing_action(name: str) -> None:
    seen: list[object] = []
    inner = name + ":inner"

    def outer_cb() -> None:
        seen.append(hooks.current_action())
        hooks.do_action(inner)
        seen.append(hooks.current_action())

    def inner_cb() -> None:
        seen.extend([hooks.current_action(), hooks.doing_action(name), hooks.doing_action(inner),
                     hooks.doing_action("something_else"), hooks.doing_action()])

    hooks.add_action(name, outer_cb)
    hooks.add_action(inner, inner_cb)
    assert hooks.current_action() is None and hooks.doing_action() is False
    hooks.do_action(name)
    assert seen == [name, inner, True, True, False, True, name]
    assert hooks.current_action() is None
    hooks.remove_all_actions(inner)


# --- filters.php ------------------------------------------------------------------------------


def test_simple_filter(name: str) -> None:
    a = MockAction()
    hooks.add_filter(name, a.filter)
    assert hooks.apply_filters(name, "foo") == "foo"
    assert a.events == [("filter", ("foo",))]


def test_remove_filter(name: str) -> None:
    a = MockAction()
    hooks.add_filter(name, a.filter)
    assert hooks.apply_filters(name, "foo") == "foo"
    hooks.remove_filter(name, a.filter)
    assert hooks.apply_filters(name, "bar") == "bar"
    assert a.call_count == 1


def test_has_filter(name: str) -> None:
    def callback(value: str) -> str:
        return value

    assert hooks.has_filter(name, callback) is False and hooks.has_filter(name) is False
    hooks.add_filter(name, callback)
    assert hooks.has_filter(name, callback) == 10 and hooks.has_filter(name) is True
    hooks.remove_filter(name, callback)
    assert hooks.has_filter(name, callback) is False and hooks.has_filter(name) is False


def test_has_filter_priority_zero_is_falsy_but_not_false(name: str) -> None:
    def callback(value: str) -> str:
        return value

    hooks.add_filter(name, callback, 0)
    assert hooks.has_filter(name, callback) == 0 and hooks.has_filter(name, callback) is not False


def test_multiple_filters_chain(name: str) -> None:
    a, b = MockAction(), MockAction()
    hooks.add_filter(name, a.filter_append)
    hooks.add_filter(name, b.filter_append)
    assert hooks.apply_filters(name, "foo") == "foo_append_append"


def test_filter_args(name: str) -> None:
    a = MockAction()
    hooks.add_filter(name, a.filter)
    assert hooks.apply_filters(name, "foo", "arg1", "arg2") == "foo"
    assert a.events == [("filter", ("foo", "arg1", "arg2"))]


def test_filter_priority(name: str) -> None:
    hooks.add_filter(name, lambda v: v + "_10", 10)
    hooks.add_filter(name, lambda v: v + "_9", 9)
    assert hooks.apply_filters(name, "x") == "x_9_10"


def test_remove_all_filters(name: str) -> None:
    a = MockAction()
    hooks.add_filter(name, a.filter)
    hooks.remove_all_filters(name)
    assert hooks.has_filter(name) is False
    assert hooks.apply_filters(name, "foo") == "foo" and a.call_count == 0


def test_remove_all_filters_respects_the_priority_argument(name: str) -> None:
    a = MockAction()
    hooks.add_filter(name, a.filter, 12)
    hooks.remove_all_filters(name, 11)
    assert hooks.has_filter(name) is True
    hooks.remove_all_filters(name, 12)
    assert hooks.has_filter(name) is False


def test_doing_filter_and_did_filter(name: str) -> None:
    seen: list[bool] = []

    def cb(value: str) -> str:
        seen.extend([hooks.doing_filter(name), hooks.doing_filter("something_else"), hooks.doing_filter()])
        return value

    assert hooks.doing_filter() is False
    hooks.add_filter(name, cb)
    hooks.apply_filters(name, "v")
    assert seen == [True, False, True]
    assert hooks.did_filter(name) == 1 and hooks.doing_filter(name) is False


# --- hooks/addFilter.php: the WP_Hook iteration cases -----------------------------------------


class RemoveAndAdd:
    """The callbacks of WordPress's ``_filter_remove_and_add*`` cases."""

    def __init__(self, name: str) -> None:
        self.name = name

    def empty(self, value: str) -> str:
        return ""

    def add1(self, value: str) -> str:
        return value + "1"

    def add2(self, value: str) -> str:
        hooks.remove_filter(self.name, self.add2, 11)
        hooks.add_filter(self.name, self.add2, 11)
        return value + "2"

    def add2_at_12(self, value: str) -> str:
        hooks.remove_filter(self.name, self.add2_at_12, 12)
        hooks.add_filter(self.name, self.add2_at_12, 12)
        return value + "2"

    def recurse2(self, value: str) -> str:
        hooks.remove_filter(self.name, self.recurse2, 11)
        value += "-" + hooks.apply_filters(self.name, "") + "-"
        hooks.add_filter(self.name, self.recurse2, 11)
        return value + "2"

    def add3(self, value: str) -> str:
        return value + "3"

    def add4(self, value: str) -> str:
        return value + "4"


def test_remove_and_add(name: str) -> None:
    c = RemoveAndAdd(name)
    hooks.add_filter(name, c.empty, 10)
    hooks.add_filter(name, c.add2, 11)
    hooks.add_filter(name, c.add4, 12)
    assert hooks.apply_filters(name, "") == "24"


def test_remove_and_add_last_filter(name: str) -> None:
    c = RemoveAndAdd(name)
    hooks.add_filter(name, c.empty, 10)
    hooks.add_filter(name, c.add1, 11)
    hooks.add_filter(name, c.add2_at_12, 12)
    assert hooks.apply_filters(name, "") == "12"


def test_remove_and_recurse_and_add(name: str) -> None:
    c = RemoveAndAdd(name)
    hooks.add_filter(name, c.empty, 10)
    hooks.add_filter(name, c.add1, 11)
    hooks.add_filter(name, c.recurse2, 11)
    hooks.add_filter(name, c.add3, 11)
    hooks.add_filter(name, c.add4, 12)
    assert hooks.apply_filters(name, "") == "1-134-234"


def test_nested_runs_iterate_independently(name: str) -> None:
    order: list[str] = []
    depth = [0]

    def first(value: str) -> str:
        order.append(f"first@{depth[0]}")
        if depth[0] == 0:
            depth[0] += 1
            hooks.apply_filters(name, value)
            depth[0] -= 1
        return value

    hooks.add_filter(name, first, 5)
    hooks.add_filter(name, lambda v: order.append(f"second@{depth[0]}") or v, 15)
    hooks.apply_filters(name, "x")
    assert order == ["first@0", "first@1", "second@1", "second@0"]


# --- Django idioms ----------------------------------------------------------------------------


def test_decorator_form_and_register_temporarily(name: str) -> None:
    @hooks.add_filter(name, priority=5)
    def shout(value: str) -> str:
        return value.upper()

    def exclaim(value: str) -> str:
        return value + "!"

    with hooks.register_temporarily(name, exclaim, priority=1):
        assert hooks.apply_filters(name, "hi") == "HI!"
    assert hooks.apply_filters(name, "hi") == "HI"
    with pytest.raises(RuntimeError), hooks.register_temporarily(name, exclaim):
        raise RuntimeError
    assert hooks.has_filter(name, exclaim) is False


def test_signal_receiver_is_an_action_at_the_default_priority(name: str) -> None:
    order: list[object] = []
    hooks.add_action(name, lambda *args: order.append(("early", args)), 5)
    hooks.add_action(name, lambda *args: order.append(("late", args)), 20)

    @receiver(hooks.signal(name))
    def on_hook(sender: str, signal: object, args: tuple[object, ...], **kwargs: object) -> None:
        order.append(("receiver", sender, args, signal is hooks.signal(name)))

    assert hooks.has_action(name, on_hook) == 10
    hooks.do_action(name, "post")
    assert order == [("early", ("post",)), ("receiver", name, ("post",), True), ("late", ("post",))]
    responses = hooks.signal(name).send(sender=None, args=("again",))
    assert (on_hook, None) in responses
    assert hooks.signal(name).disconnect(on_hook) is True
    assert hooks.has_action(name, on_hook) is False


def test_send_robust_returns_receiver_exceptions_as_responses(name: str) -> None:
    """Django's contract: ``send`` lets a receiver's exception propagate, ``send_robust`` catches
    it, logs it, returns it as that receiver's response, and goes on to the next receiver."""
    after: list[object] = []
    boom = ValueError("receiver failed")

    def failing(sender: str, **kwargs: object) -> None:
        raise boom

    def later(sender: str, **kwargs: object) -> str:
        after.append(kwargs["args"])
        return "ran"

    hooks.signal(name).connect(failing, priority=5)
    hooks.signal(name).connect(later, priority=20)
    responses = hooks.signal(name).send_robust(sender=None, args=("x",))
    assert responses == [(failing, boom), (later, "ran")] and after == [("x",)]
    with pytest.raises(ValueError, match="receiver failed"):
        hooks.signal(name).send(sender=None)


def test_before_dispatch_runs_before_every_hook_call(name: str) -> None:
    calls: list[str] = []
    previous = hooks._before_dispatch  # the registry's sync, installed in AppConfig.ready
    hooks.set_before_dispatch(lambda: calls.append("sync"))
    try:
        hooks.apply_filters(name, 1)
        hooks.do_action(name)
    finally:
        hooks.set_before_dispatch(previous)
    assert calls == ["sync", "sync"]


def test_do_action_returns_bodies_of_collecting_callbacks(name: str) -> None:
    def plugin_like(*args: object) -> dict[str, str]:
        return {"html": "<meta>"}

    plugin_like.collect = True  # type: ignore[attr-defined]
    hooks.add_action(name, plugin_like)
    hooks.add_action(name, lambda *args: "ignored: not a plugin")
    assert hooks.do_action(name) == [{"html": "<meta>"}]


def test_async_twins_do_not_block_the_event_loop(name: str) -> None:
    def slow(value: str) -> str:
        time.sleep(0.3)  # stands in for a long guest call
        return value + "!"

    hooks.add_filter(name, slow)
    hooks.add_action(name + ":a", lambda: time.sleep(0.3))

    async def main() -> tuple[str, list[object], int]:
        ticks = 0

        async def ticker() -> None:
            nonlocal ticks
            for _ in range(20):
                await asyncio.sleep(0.01)
                ticks += 1

        result, _ = await asyncio.gather(hooks.aapply_filters(name, "v"), ticker())
        bodies = await hooks.ado_action(name + ":a")
        return result, bodies, ticks

    result, bodies, ticks = asyncio.run(main())
    assert result == "v!" and bodies == []
    assert ticks == 20  # the loop kept running while the filter slept in a worker thread
    assert hooks.did_action(name + ":a") == 1
    hooks.remove_all_actions(name + ":a")


def test_template_tags(name: str) -> None:
    hooks.add_filter(name, lambda html, *args: html + f"<aside>{len(args)}</aside>")

    def head(*args: object) -> dict[str, str]:
        return {"html": "<meta name='x'>"}

    def raw(*args: object) -> str:
        return "<link rel='y'>"

    head.collect = raw.collect = True  # type: ignore[attr-defined]
    hooks.add_action(name + ":head", head)
    hooks.add_action(name + ":head", raw)
    template = Template(
        "{% load gonext_hooks %}"
        "[{{ body|apply_filters:hook }}]"
        "[{{ text|apply_filters:hook }}]"
        "{% apply_filters hook body post as out %}[{{ out }}]"
        "[{% do_action head_hook post %}]"
    )
    from django.utils.safestring import mark_safe

    rendered = template.render(Context({
        "hook": name, "head_hook": name + ":head", "post": {"id": 1},
        "body": mark_safe("<p>safe</p>"), "text": "<b>unsafe</b>",
    }))
    assert "[<p>safe</p><aside>0</aside>]" in rendered
    # Unsafe input stays escaped: a filter cannot launder text into HTML.
    assert "[&lt;b&gt;unsafe&lt;/b&gt;&lt;aside&gt;0&lt;/aside&gt;]" in rendered
    assert "[<p>safe</p><aside>1</aside>]" in rendered
    assert "[<meta name='x'>\n<link rel='y'>]" in rendered
    hooks.remove_all_actions(name + ":head")


def test_an_overlay_is_seen_by_its_own_context_only() -> None:
    """``hooks.overlay``: added receivers run and hidden ones do not, in this context only; another
    thread meanwhile sees the shared hook unchanged, and nothing is left after the block."""
    import threading

    from gonext_plugins import hooks

    def shared(value: str) -> str:
        return value + "+shared"

    def added(value: str) -> str:
        return value + "+added"

    seen: list[str] = []
    with hooks.register_temporarily("overlay_test", shared):
        with hooks.overlay([("overlay_test", added, 5)], hide=lambda callback: callback is shared):
            assert hooks.apply_filters("overlay_test", "v") == "v+added"
            thread = threading.Thread(target=lambda: seen.append(hooks.apply_filters("overlay_test", "v")))
            thread.start()
            thread.join()
        assert seen == ["v+shared"]
        assert hooks.apply_filters("overlay_test", "v") == "v+shared"
    with hooks.overlay([("overlay_only", added, 10)]):
        assert hooks.apply_filters("overlay_only", "v") == "v+added"
    assert hooks.apply_filters("overlay_only", "v") == "v"
