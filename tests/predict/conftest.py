"""Fixtures of the predict tests (`cli`), from tests/plugin_support.py."""
from plugin_support import clean_registry, cli  # noqa: F401  (fixtures)
