"""The DRF API: everything an admin can do, a script can do (``docs/api.md``).

Thin on purpose: views parse, check permissions, call :mod:`gonext_plugins.lifecycle` and render.
Nothing here writes plugin state itself.
"""
