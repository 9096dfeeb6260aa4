"""TrajPlate backend: shot bundles in, reference plates out."""

__version__ = "0.1.0"
