"""HTTP routes of the plugin app (the live log page, the dev install endpoint, the API)."""

app_name = "gonext_plugins"

urlpatterns: list = []
