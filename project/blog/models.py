"""A post, the one thing the demo blog has."""

from functools import lru_cache

from django.db import models
from django.urls import get_urlconf, reverse

_SLUG_MARK = "slug-placeholder-0"


@lru_cache(maxsize=8)
def _detail_url(urlconf: str | None) -> str:
    return reverse("blog:detail", args=[_SLUG_MARK], urlconf=urlconf)


class Post(models.Model):
    title = models.CharField(max_length=200)
    slug = models.SlugField(max_length=200, unique=True)
    body = models.TextField()
    published = models.BooleanField(default=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-created_at", "-id"]

    def __str__(self) -> str:
        return self.title

    def get_absolute_url(self) -> str:
        return reverse("blog:detail", args=[self.slug])

    def to_plugin_json(self) -> dict[str, object]:
        """How a post crosses into plugins (hook arguments and host-function results). Runs on every
        hook call of a page, so the URL comes from a cached pattern rather than a full reverse()."""
        return {"id": self.pk, "title": self.title, "slug": self.slug, "body": self.body,
                "url": _detail_url(get_urlconf()).replace(_SLUG_MARK, self.slug), "published": self.published}

    def meta_value(self, key: str, default: object = None) -> object:
        meta = self.meta.filter(key=key).first()
        return meta.value if meta else default


class PostMeta(models.Model):
    """Extra data plugins store on a post (for example the SEO plugin's ``seo_score``)."""

    post = models.ForeignKey(Post, on_delete=models.CASCADE, related_name="meta")
    key = models.CharField(max_length=100)
    value = models.JSONField()
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["post", "key"], name="blog_unique_post_meta")]

    def __str__(self) -> str:
        return f"{self.post_id}:{self.key}"
