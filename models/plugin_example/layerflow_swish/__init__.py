"""layerflow-swish: the Swish layer as a layerflow plugin (see swish.py)."""
from .swish import Swish, SwishParams, swish_backward, swish_forward

__all__ = ["Swish", "SwishParams", "swish_forward", "swish_backward"]
