"""Fixtures of the plugin tests (`clean_registry` autouse, `swish_site`, `cli`), defined in
support.py beside this file and loaded by path, so no test imports a conftest."""
import importlib.util
import sys
from pathlib import Path

_NAME = "layerflow_tests_plugin_support"
if _NAME not in sys.modules:
    _spec = importlib.util.spec_from_file_location(_NAME, Path(__file__).parent / "support.py")
    sys.modules[_NAME] = importlib.util.module_from_spec(_spec)
    _spec.loader.exec_module(sys.modules[_NAME])
support = sys.modules[_NAME]

clean_registry = support.clean_registry
swish_site = support.swish_site
cli = support.cli
