"""The package version (its own module, so the engine never imports the package root)."""

__version__ = "0.1.0"
