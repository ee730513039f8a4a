"""PixelHub: a FHIR-centric interoperability hub for enterprise imaging."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("pixelhub")
except PackageNotFoundError:  # running from a source tree without installation
    __version__ = "0.0.0"

__all__ = ["__version__"]
