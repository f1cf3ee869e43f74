"""Fixtures of the ONNX tests (`clean_registry` autouse, `swish_site`, `cli`), from
tests/plugin_support.py."""
from plugin_support import clean_registry, cli, swish_site  # noqa: F401  (fixtures)
