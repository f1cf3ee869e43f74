"""The built-in solver types and lr policies. Importing this package registers them."""
from . import lr_policies, sgd  # noqa: F401  (imported for their registration side effect)
