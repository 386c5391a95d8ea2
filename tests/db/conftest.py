"""The storage tests use `raw_db` and `db` from tests/conftest.py (both backends)."""
