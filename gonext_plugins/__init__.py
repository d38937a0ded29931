"""gonext_plugins: signed, sandboxed WebAssembly plugins for Django sites.

Importing this package must not import Django: the runtime layer is usable on its own.
"""

__version__ = "0.1.0"
