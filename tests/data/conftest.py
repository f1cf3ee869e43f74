"""Fixtures of the data tests (`clean_registry` autouse: plugin sources registered by a test
are forgotten after it; `cli`), from tests/plugin_support.py."""
from plugin_support import clean_registry, cli  # noqa: F401  (fixtures)
