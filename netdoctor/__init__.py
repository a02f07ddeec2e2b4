"""netdoctor: a read-only network doctor for Docker containers."""

__version__ = "0.1.0"
