"""Layer 1: the wasmtime host. No Django here; importable without a settings module.

``Runtime`` loads plugins (``Runtime.load``) and ``Plugin`` runs their hooks and jobs under
``Limits``. See ``../shared/ABI.md`` for the guest contract and ``dispatch.py`` for the dispatcher
contract.
"""

from gonext_plugins.runtime.host import HostContext, HostFunction, HostFunctions, time_left
from gonext_plugins.runtime.limits import Limits
from gonext_plugins.runtime.runtime import Plugin, Runtime

__all__ = ["HostContext", "HostFunction", "HostFunctions", "Limits", "Plugin", "Runtime", "time_left"]
