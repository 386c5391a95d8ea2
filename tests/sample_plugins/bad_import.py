"""Fails while being imported, as a plugin with a missing dependency does."""

import medianest_no_such_dependency  # noqa: F401
