"""mlnmf: multilayer non-negative matrix factorisation of images."""

__version__ = "0.1.0"
