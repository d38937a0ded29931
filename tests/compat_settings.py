"""The test settings of a site upgraded without ``posts.read`` (see ``tests/compat_site``)."""

from tests.settings import *  # noqa: F403
from tests.settings import INSTALLED_APPS

INSTALLED_APPS = [*INSTALLED_APPS, "tests.compat_site.apps.CompatSiteConfig"]
