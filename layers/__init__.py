"""The built-in layers. Importing this package registers every one of them."""
from . import (  # noqa: F401  (imported for their @register_layer side effect)
    accuracy,
    convolution,
    data,
    deconvolution,
    eltwise,
    inner_product,
    input,
    relu,
    sigmoid,
    softmax_loss,
    svm_loss,
)
