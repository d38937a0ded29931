"""A site "upgraded" without its gallery feature: its AppConfig unregisters ``posts.read`` (and the
host functions under it) after the demo blog registered it, as a site that dropped the feature
would. ``tests/compat_settings.py`` installs it; ``tests/test_compat_startup.py`` runs it."""
