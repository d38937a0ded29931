"""Signals sent by ``lifecycle``: the lower layer announces, the layers above react (the registry,
the log), so ``lifecycle`` never imports them.

The plugin signals are sent after each change commits. Receivers get ``sender=Plugin`` and
``plugin`` (the row), ``version`` (a ``PluginVersion`` or None), ``actor`` and ``details``
(``plugin_installed`` and ``plugin_upgraded`` of a dev build carry ``dev=True`` and its
``status``). They are sent with ``transaction.on_commit``, so a receiver never
sees a change that was rolled back.
"""

from django.dispatch import Signal

plugin_installed = Signal()
plugin_activated = Signal()
plugin_deactivated = Signal()
plugin_upgraded = Signal()
plugin_rolled_back = Signal()
plugin_uninstalled = Signal()
plugin_quarantined = Signal()
plugin_grants_changed = Signal()

generation_changed = Signal()
"""Plugin state changed and the change committed (sent once per bumped generation, on commit,
``sender=Generation``). The registry of this process re-reads the database on its next call."""

plugin_faulted = Signal()
"""A plugin faulted (trap, timeout, bad result, load error), sent at once, not on commit:
``sender=Plugin`` with ``slug``, ``kind``, ``message``, ``version``, ``hook``, ``guest_message``
and ``report`` (a trap report, or None). The plugin's log writes its line from it."""
