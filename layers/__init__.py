"""The built-in layers. Importing this package registers every one of them."""
from . import (  # noqa: F401  (imported for their @register_layer side effect)
    accuracy,
    batch_norm,
    bias,
    data,
    dropout,
    eltwise,
    inner_product,
    input,
    relu,
    scale,
    sigmoid,
    softmax,
    softmax_loss,
    svm_loss,
)
