"""Stratum: an enterprise large-model platform in one package."""

from stratum.errors import StratumError
from stratum.settings import Settings

__version__ = "0.1.0"

__all__ = ["Settings", "StratumError", "__version__"]
