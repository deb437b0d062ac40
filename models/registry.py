"""Model configs, the factory and the weights loader.

A checkpoint is a plain dict (loadable with `torch.load(..., weights_only=True)`, nothing
unpickled): the model's name and version, the architecture arguments, the crop contract it was
trained with and the detector calibration, plus the state dict. Outputs name the model that made
them from this, so a file of tracks can always say which weights produced it.
"""
from __future__ import annotations

import io
import os
import pickle
from dataclasses import asdict, dataclass

import torch

from .crop import BoxCalibration, CropSpec
from .landmark_net import LandmarkNet

FORMAT = "facetracks-landmarks/1"
WEIGHTS_DIR = os.path.join(os.path.dirname(__file__), "weights")
DEFAULT_MODEL = "ft68-resnet-slim-hm"


@dataclass(frozen=True)
class Arch:
    """One named model's whole shape: the crop it sees (input size, expand) and the network's widths.
    Kept together so a crop can never be paired with a network trained on another."""
    input_size: int
    expand: float
    widths: tuple[int, ...]
    depths: tuple[int, ...]
    head_channels: int
    hidden: int
    head: str = "fc"
    head_levels: int = 1

    @property
    def crop(self) -> CropSpec:
        return CropSpec(self.input_size, self.expand)

    def net(self) -> dict:
        """LandmarkNet's arguments but the input size, as checkpoints store them ("arch")."""
        return {"widths": self.widths, "depths": self.depths, "head_channels": self.head_channels,
                "hidden": self.hidden, "head": self.head, "head_levels": self.head_levels}


# Named architectures (timm-style): one name, one crop contract, one shipped weights file.
ARCHS: dict[str, Arch] = {
    # the accurate default until 2026.11.27: ~211 M multiply-adds a crop
    "ft68-resnet-s": Arch(112, 1.35, widths=(32, 64, 128, 192), depths=(1, 2, 2), head_channels=64, hidden=256),
    # the fast preset's model until 2026.11.28: 64 px input, ~11 M multiply-adds, ~9x cheaper per crop on a CPU
    "ft68-resnet-xs": Arch(64, 1.35, widths=(16, 32, 64, 128), depths=(1, 1, 1), head_channels=32, hidden=256),
    # the accurate default from 2026.11.27 to 2026.11.27b: ft68-resnet-s's body with the heatmap head
    # (landmark_net.HeatmapHead), ~212 M multiply-adds
    "ft68-resnet-s-hm": Arch(112, 1.35, widths=(32, 64, 128, 192), depths=(1, 2, 2), head_channels=128, hidden=0,
                             head="heatmap"),
    # the accurate default since 2026.11.27b: a slimmer body (~148 M multiply-adds, 0.7x) whose heatmap
    # head also reads the stage before the last (head_levels=2, a 14x14 map); 3.84 % identity test
    "ft68-resnet-slim-hm": Arch(112, 1.35, widths=(24, 48, 96, 160), depths=(1, 2, 2), head_channels=96, hidden=0,
                                head="heatmap", head_levels=2),
    # the fast preset's model since 2026.11.28: ft68-resnet-xs's body with a two-level heatmap head (an
    # 8x8 map; the last stage's 4x4 alone is too coarse to choose cells from), distilled from
    # ft68-resnet-slim-hm; ~15 M multiply-adds, 4.07 % identity test as fast runs it
    "ft68-resnet-xs-hm": Arch(64, 1.35, widths=(16, 32, 64, 128), depths=(1, 1, 1), head_channels=64, hidden=0,
                              head="heatmap", head_levels=2),
}

# Haar box -> face square before any training data has been seen (fitted on the shipped models' data);
# training replaces it with the calibration fitted on its own split.
HAAR_PRIOR = BoxCalibration(dx=0.0, dy=0.158, scale=0.875)


@dataclass
class ModelCfg:
    """What a checkpoint says about its network: name, version, architecture, crop and detector
    calibration. Built from a name (`named`) or a checkpoint (`from_dict`), never from defaults."""
    name: str
    version: str
    arch: dict
    crop: CropSpec
    haar: BoxCalibration

    @classmethod
    def named(cls, name: str, version: str = "untrained", haar: BoxCalibration = HAAR_PRIOR,
              arch: dict | None = None) -> "ModelCfg":
        """`arch`: fields of the named architecture changed (experiments: `train --arch`), the
        crop's (`input_size`, `expand`) included; lists are read as tuples, as a config file written
        as JSON gives them back."""
        if name not in ARCHS:
            raise ValueError(f"unknown model {name!r}; known: {', '.join(ARCHS)}")
        a = ARCHS[name]
        changed = {k: tuple(v) if isinstance(v, list) else v for k, v in (arch or {}).items()}
        crop = CropSpec(int(changed.pop("input_size", a.input_size)), float(changed.pop("expand", a.expand)))
        return cls(name=name, version=version, arch={**a.net(), **changed}, crop=crop, haar=haar)

    def to_dict(self) -> dict:
        d = asdict(self)
        d["arch"] = {k: list(v) if isinstance(v, tuple) else v for k, v in self.arch.items()}
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "ModelCfg":
        # fields added since a checkpoint was written take the value every network had before them
        arch = {"head": "fc", "head_levels": 1,
                **{k: tuple(v) if isinstance(v, list) else v for k, v in d["arch"].items()}}
        return cls(name=d["name"], version=d["version"], arch=arch, crop=CropSpec(**d["crop"]),
                   haar=BoxCalibration(**d["haar"]))


def create_model(cfg: ModelCfg) -> LandmarkNet:
    return LandmarkNet(input_size=cfg.crop.input_size, **cfg.arch)


QSCALE = ".__qscale"


def quantize_state_dict(sd: dict) -> dict:
    """Conv and linear weights as int8 with one float32 scale per output channel; the rest as is.

    For shipping: a quarter of the size (2.7 MB instead of 10.7), and the dequantized weights give
    the same NME to the second decimal (measured on the identity test split; see the model card).
    """
    out = {}
    for k, v in sd.items():
        v = v.detach().cpu()
        if v.is_floating_point() and v.ndim >= 2:
            scale = v.abs().reshape(v.shape[0], -1).amax(dim=1).clamp_min(1e-12) / 127.0
            out[k] = torch.round(v / scale.view(-1, *[1] * (v.ndim - 1))).to(torch.int8)
            out[k + QSCALE] = scale.float()
        else:
            out[k] = v.clone()
    return out


def dequantize_state_dict(sd: dict) -> dict:
    out = {}
    for k, v in sd.items():
        if k.endswith(QSCALE):
            continue
        if k + QSCALE in sd:
            scale = sd[k + QSCALE]
            v = v.float() * scale.view(-1, *[1] * (v.ndim - 1))
        out[k] = v.float() if v.is_floating_point() else v
    return out


def save_checkpoint(path: str, model: torch.nn.Module, cfg: ModelCfg, compact: bool = False, **extra) -> None:
    """Write atomically (temp name, then rename); `compact` stores int8 weights to ship small."""
    sd = model.state_dict()
    sd = quantize_state_dict(sd) if compact else {k: v.detach().cpu().clone() for k, v in sd.items()}
    tmp = path + ".tmp"
    torch.save({"format": FORMAT, "config": cfg.to_dict(), "state_dict": sd, **extra}, tmp)
    os.replace(tmp, path)


def export_compact(src: str, dst: str) -> None:
    """Turn a training checkpoint (e.g. best.pt) into a shippable one: int8 weights, no optimizer."""
    ckpt = load_checkpoint(src)
    model = create_model(ModelCfg.from_dict(ckpt["config"]))
    model.load_state_dict(dequantize_state_dict(ckpt["state_dict"]))
    keep = {k: ckpt[k] for k in ("epoch", "val_nme") if k in ckpt}
    save_checkpoint(dst, model, ModelCfg.from_dict(ckpt["config"]), compact=True, **keep)


def load_checkpoint(source: str | bytes) -> dict:
    """A checkpoint from a path, or from the file's bytes (as Ray actors get it, so a cluster's
    nodes need no shared copy); a ValueError naming the file when it is not one of ours."""
    name = "weights" if isinstance(source, bytes) else source
    try:
        ckpt = torch.load(io.BytesIO(source) if isinstance(source, bytes) else source, map_location="cpu",
                          weights_only=True)
    except FileNotFoundError:
        raise ValueError(f"{name}: no such weights file") from None
    except (RuntimeError, pickle.UnpicklingError, EOFError, OSError) as e:
        raise ValueError(f"{name}: not a readable checkpoint ({type(e).__name__}: {str(e)[:200]})") from None
    if not isinstance(ckpt, dict) or ckpt.get("format") != FORMAT:
        raise ValueError(f"{name}: not a facetracks landmark checkpoint (format {FORMAT})")
    return ckpt


def default_weights(name: str = DEFAULT_MODEL) -> str:
    return os.path.join(WEIGHTS_DIR, f"{name}.pt")


def resolve_weights(spec: str | None) -> str:
    """A weights file path, or the name of a shipped model (`ft68-resnet-xs`); None: the default."""
    if not spec:
        return default_weights()
    if spec in ARCHS and not os.path.exists(spec):
        return default_weights(spec)
    return spec


def load_model(path: str | bytes | None = None, device: str | torch.device = "cpu") -> tuple[LandmarkNet, ModelCfg]:
    """Build the network from a checkpoint (a path or its bytes) or shipped model name (default:
    the shipped default weights), in eval mode on `device`."""
    if not isinstance(path, bytes):
        path = resolve_weights(path)
        if not os.path.exists(path):
            raise FileNotFoundError(f"{path}: no such weights file")
    ckpt = load_checkpoint(path)
    cfg = ModelCfg.from_dict(ckpt["config"])
    model = create_model(cfg)
    model.load_state_dict(dequantize_state_dict(ckpt["state_dict"]))
    return model.to(device).eval(), cfg
