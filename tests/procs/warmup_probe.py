"""A fresh web process started the way a server starts it: import the site's ASGI application
(``project.asgi``: ``django.setup()``, then ``with_plugins()``, which warms up when
``GONEXT_WARM_UP=1``), then serve one post page. Prints one JSON line: what was loaded and imported
when the application was ready, and what the first page loaded or imported on top of that.
"""

from __future__ import annotations

import sys

from _django import REPO, emit


def main() -> None:
    sys.path.insert(0, str(REPO))
    from django.test import Client

    import project.asgi  # noqa: F401  (the server's import: set-up and, if on, the warm-up)
    from gonext_plugins import loading
    from gonext_plugins.registry import registry
    from project.blog.models import Post

    def counters() -> list[int]:
        cache = loading.runtime().cache
        return [cache.hits, cache.misses]

    ready_loaded = registry.loaded(sync=False)
    ready_modules = set(sys.modules)
    ready_counters = counters()
    post = Post.objects.get(slug="hello-plugins")
    response = Client().get(post.get_absolute_url())
    page_loaded = registry.loaded(sync=False)
    new_modules = sorted(set(sys.modules) - ready_modules)
    emit(
        ready_plugins=sorted(ready_loaded),
        ready_incompatible=sorted(registry.incompatible()),
        ready_api_imported="rest_framework.views" in ready_modules,
        status=response.status_code,
        page_plugins=sorted(page_loaded),
        # The same LoadedPlugin objects: the page swapped nothing in (a load builds new ones) ...
        same_objects=all(page_loaded.get(slug) is loaded for slug, loaded in ready_loaded.items()),
        # ... and read no compiled module from the artifact cache.
        cache_reads_by_page=[now - then for now, then in zip(counters(), ready_counters, strict=True)],
        templatetags_imported_by_page=[name for name in new_modules if ".templatetags." in name],
    )


if __name__ == "__main__":
    main()
