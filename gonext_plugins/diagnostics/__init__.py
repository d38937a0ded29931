"""Reading what a plugin's module says about itself, for people: layer 1, no Django.

``wasmbin`` (LEB128, sections, imports, functions), ``sourcemap`` (Source Map v3), ``dwarf`` (DWARF
line tables turned into source maps) and ``traps`` (a trap's frames as ``file:line``). Production
code (the registry, the API) and the plugin author's ``devtools`` both import from here; ``runtime``
may too, so nothing here imports Django or the rest of ``gonext_plugins`` but ``errors``.
"""
