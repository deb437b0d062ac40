"""Which facetracks code a process runs. The driver and every actor must run the same: a node
left on an older install gives other landmarks for the same frames, in the same track files,
with nothing to show for it. Ray checks that its own version and Python's agree across a
cluster, not ours; so each actor is handed the driver's `code_id()` and refuses to start on
another (`check_code`)."""
from __future__ import annotations

import functools
import hashlib
import importlib
import os

import facetracks

# the installed package and its subpackages (setup.cfg): every file in them counts, the shipped
# weights and the face shape prior that actors read from their own install too
PARTS = ("facetracks", "facetracks.models", "facetracks.models.weights", "facetracks.pipeline",
         "facetracks.training", "facetracks.jobs")


class CodeMismatch(RuntimeError):
    """This process runs other facetracks code than the driver that started it."""


@functools.cache
def code_id() -> str:
    """The version and a hash of the package's files (`0.1.0+3f2a…`: sources, weights, data; 7 MB,
    about 20 ms): equal on two machines exactly when they would run the same code, however it was
    installed (a wheel, an editable checkout). The version alone stays 0.1.0 from one commit to
    the next."""
    h = hashlib.sha256()
    for name in PARTS:
        folder = importlib.import_module(name).__path__[0]
        for f in sorted(os.listdir(folder)):
            path = os.path.join(folder, f)
            if os.path.isfile(path) and not f.endswith((".pyc", ".pyo")):
                with open(path, "rb") as src:
                    h.update(f"{name}/{f}\0".encode() + src.read() + b"\0")
    return f"{facetracks.__version__}+{h.hexdigest()[:12]}"


def check_code(driver: str | None) -> None:
    """Raise CodeMismatch unless this process runs the code `driver` names (None: no check)."""
    if driver is not None and (here := code_id()) != driver:
        raise CodeMismatch(f"this node runs facetracks {here}, the driver {driver}: "
                           f"install the same facetracks on every node")
