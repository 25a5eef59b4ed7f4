"""SGPN networks, 3DMM shape prior, renderer, alignment maths and the restoration pipeline."""

__version__ = "0.1.0"
