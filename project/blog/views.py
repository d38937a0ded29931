"""List and detail pages of published posts."""

from django.views.generic import DetailView, ListView

from .models import Post


class PostListView(ListView):
    queryset = Post.objects.filter(published=True)
    template_name = "blog/post_list.html"
    context_object_name = "posts"
    paginate_by = 20


class PostDetailView(DetailView):
    queryset = Post.objects.filter(published=True)
    template_name = "blog/post_detail.html"
    context_object_name = "post"
