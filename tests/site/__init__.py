"""Tests of the demo site (project/): the blog, the SEO example in its pages, ``make demo``'s seed
data and the docs that drive the demo site. The app's own tests are the rest of tests/."""
