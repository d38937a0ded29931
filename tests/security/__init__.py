"""Tests of the security fixes of issue #13, one file per class of issue."""
