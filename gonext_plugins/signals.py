"""Signals sent by ``lifecycle`` after each change commits.

Receivers get ``sender=Plugin`` and ``plugin`` (the row), ``version`` (a ``PluginVersion`` or
None), ``actor`` and ``details``. They are sent with ``transaction.on_commit``, so a receiver never
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
