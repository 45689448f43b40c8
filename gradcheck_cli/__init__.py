"""gradcheck: does the gradient flow through your PyTorch model, and what to change when it doesn't."""

__version__ = "0.1.0"
