"""The built-in solver types and lr policies. Importing this package registers them."""
from . import (  # noqa: F401  (imported for their registration side effect)
    adadelta,
    adagrad,
    adam,
    lr_policies,
    nesterov,
    rmsprop,
    sgd,
)
