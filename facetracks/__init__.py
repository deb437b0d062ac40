"""facetracks: 68-point facial landmarks on video, as Parquet tracks.

The repository keeps its four parts at the top (`models/`, `pipeline/`, `training/`, `jobs/`);
installed, they live under this one name (`facetracks.models`, ...), so a user's own `models.py`
or another package's `jobs` can never shadow them. The few names a Python user needs are here,
loaded on first use so that `import facetracks` stays cheap (no torch until a model is wanted):

    import facetracks
    tracks = facetracks.annotate_video("talk.mp4")              # a pandas DataFrame, a row per face per frame
    facetracks.render_video("talk.mp4", tracks, "talk.sunglasses.mp4")
    tracks = facetracks.read_tracks("out/talk.mp4.parquet")     # annotate's output for talk.mp4
    ds.map_batches(facetracks.Landmarker, ...)                   # in a Ray Data pipeline (raydata.py)
"""
from __future__ import annotations

__version__ = "0.1.0"

_API = ("annotate_video", "load_profile", "render_video", "read_tracks", "PROFILES", "FILTERS", "Landmarker")
_MODULE = {"Landmarker": "raydata"}      # names not in api.py: the module that holds each
__all__ = [*_API, "__version__"]


def __getattr__(name: str):
    if name in _API:
        from importlib import import_module
        return getattr(import_module(f".{_MODULE.get(name, 'api')}", __name__), name)
    raise AttributeError(f"module 'facetracks' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(__all__)
