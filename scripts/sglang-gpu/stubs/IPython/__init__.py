"""Stub of IPython for the GPU tier (installed only where the real one is missing).
SGLang 0.5.23 imports `IPython.display.HTML` and `display` at module load (sglang/utils.py, notebook
helpers); serving never calls them."""

__version__ = "0.0.0+memtest.stub"
