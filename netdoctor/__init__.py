"""netdoctor: a read-only network doctor for Docker containers.

The library API (see netdoctor.core): `diagnose(Request(...))` yields findings; `build(...)` makes a
Request from command-line style values and the config file; BadInput and CannotCheck say why a run
could not start. They are imported on first use, so `netdoctor --help` stays fast.
"""

__version__ = "0.1.0"

_LAZY = {
    "diagnose": "netdoctor.core", "Diagnosis": "netdoctor.core",
    "Request": "netdoctor.request", "Options": "netdoctor.request", "Selector": "netdoctor.request",
    "build": "netdoctor.request",
    "BadInput": "netdoctor.errors", "CannotCheck": "netdoctor.errors", "NetdoctorError": "netdoctor.errors",
    "Finding": "netdoctor.model", "Status": "netdoctor.model",
}
__all__ = ["__version__", *_LAZY]


def __getattr__(name: str):
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'netdoctor' has no attribute {name!r}")
