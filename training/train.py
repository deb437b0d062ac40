"""Training loop: seeded, logged per epoch, checkpointed, resumable.

Loss is Wing loss on crop pixels (Feng et al. 2018): log-shaped near zero so small errors keep a
useful gradient, L1 far out so outliers do not dominate — it beat SmoothL1 (the seed's loss) and
plain L1 for the same budget. Validation NME is measured on the validation identities with
calibrated detector squares (`val` boxes), the way inference will see faces.
"""
from __future__ import annotations

import json
import math
import os
import random
import time
from dataclasses import asdict, dataclass, field, replace

import numpy as np
import torch
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn
from torch.utils.data import DataLoader, Dataset, Sampler
from tqdm import tqdm

from facetracks.models.crop import BoxCalibration, CropSpec, square_from_box, square_from_points, unmirror_coords
from facetracks.models.inference import LandmarkPredictor
from facetracks.models.landmark_net import fused_for_inference
from facetracks.models.precision import forward_mixed, resolve_device, resolve_precision
from facetracks.models.registry import (DEFAULT_MODEL, HAAR_PRIOR, ModelCfg, create_model, export_compact, load_model,
                                       save_checkpoint)

from .data import Sample
from .metrics import nme
from .transforms import train_transforms


@dataclass
class TrainConfig:
    epochs: int = 60
    batch_size: int = 64
    lr: float = 3e-3
    weight_decay: float = 1e-4
    warmup_epochs: float = 2.0
    seed: int = 0
    threads: int = 0                 # 0: torch's default
    wing_w: float = 10.0
    wing_eps: float = 2.0
    version: str = "dev"
    precision: str = "auto"          # bf16 | fp32 | auto (bf16 where the device runs it natively)
    device: str = "auto"             # cpu | cuda | auto (cuda where there is one)
    workers: int = 0                 # DataLoader processes preparing batches (0: in the training process)
    val_every: int = 1               # epochs between validations (the last epoch is always validated)
    ema: float = 0.0                 # decay per step of an exponential moving average of the weights
                                     # (0: off); when on, the average is what is validated and shipped
    teacher: str = ""                # distillation: weights (a path or shipped name) whose mirrored reading of
                                     # each crop is a second target ("": none)
    distill: float = 0.8             # with a teacher: its target's weight in the loss, the labels' 1 - distill
                                     # (0.8: chosen on the val identities, docs/eval/distill.json)
    model_name: str = DEFAULT_MODEL             # a name in models.registry.ARCHS
    model: dict = field(default_factory=dict)   # overrides of its arch


class LandmarkDataset(Dataset):
    """Samples with their landmark square and, where the detector found the face, its calibrated
    square, augmented by `train_transforms` drawn from (seed, index): the same crops whichever
    loader process makes them and however many there are (a generator shared by forked processes
    would draw the same numbers in each). `transform`, when set, replaces the augmentation."""

    def __init__(self, samples: list[Sample], det_squares: list[np.ndarray | None], spec: CropSpec, seed: int,
                 teacher: CropSpec | None = None):
        self.samples, self.det_squares, self.spec, self.seed, self.teacher = samples, det_squares, spec, seed, teacher
        self.transform = None

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, key: int | tuple[int, int]) -> dict:
        seed, i = key if isinstance(key, tuple) else (self.seed, key)
        s = self.samples[i]
        d = {"gray": s.gray, "points": s.points, "square": square_from_points(s.points),
             "det_square": self.det_squares[i]}
        out = (self.transform or train_transforms(self.spec, [seed, i], self.teacher))(d)
        return {k: out[k] for k in ("image", "target", "teacher_image") if k in out}


class EpochOrder(Sampler):
    """The shuffled order of an epoch, drawn from the epoch's seed, as (epoch seed, index) keys.
    The seed travels with each key so the loader's processes can live for the whole run: starting
    them again every epoch cost about as much as a GPU epoch itself."""

    def __init__(self, n: int, seed: int):
        self.n, self.seed, self.epoch = n, seed, 0

    def __len__(self) -> int:
        return self.n

    def __iter__(self):
        s = self.seed * 1000 + self.epoch
        return iter([(s, i) for i in torch.randperm(self.n, generator=torch.Generator().manual_seed(s)).tolist()])


def wing_loss(pred: torch.Tensor, target: torch.Tensor, w: float, eps: float, scale: float) -> torch.Tensor:
    x = (pred - target).abs() * scale
    c = w - w * math.log1p(w / eps)
    return torch.where(x < w, w * torch.log1p(x / eps), x - c).mean()


def load_teacher(weights: str, dev: torch.device) -> tuple[torch.nn.Module, CropSpec]:
    """The teacher network, BatchNorm folded, and its crop spec. It may crop wider or tighter than
    the student (`expand`): both crops are cut around the same square, so `teacher_coords` maps its
    answer into the student's crop by the ratio of the two."""
    net, tcfg = load_model(weights, dev)
    return fused_for_inference(net), tcfg.crop


def teacher_coords(teacher: torch.nn.Module, spec: CropSpec, x: torch.Tensor, bf16: bool,
                   student: CropSpec | None = None) -> torch.Tensor:
    """The teacher's answer for a batch of its crops: the mean of its reading of each crop and of
    the crop mirrored, as `accurate` reads a face, in the `student`'s crop-normalised coordinates
    (default: the teacher's own). A crop-normalised point is the square's centre plus
    coords * expand * side / 2 whatever the input size (`crop.crop_matrices`), so the same point
    in a crop of another `expand` is coords * expand / student.expand."""
    with torch.no_grad():
        both = forward_mixed(teacher, torch.cat([x, x.flip(-1)]).contiguous(memory_format=torch.channels_last), bf16)
    coords = (both[:len(x)] + unmirror_coords(both[len(x):], spec)) / 2
    return coords if student is None else coords * (spec.expand / student.expand)   # x 1.0: exact


def fit_calibration(samples: list[Sample], boxes: list[np.ndarray | None]) -> BoxCalibration:
    """Median offset and scale from detector boxes to landmark squares, over faces the detector found."""
    rel = []
    for s, b in zip(samples, boxes):
        if b is None:
            continue
        x, y, w, h = b[:4]
        cx, cy, side = square_from_points(s.points)
        rel.append(((cx - x - w / 2) / w, (cy - y - h / 2) / w, side / w))
    if not rel:
        return HAAR_PRIOR
    dx, dy, sc = np.median(np.array(rel), axis=0)
    return BoxCalibration(float(dx), float(dy), float(sc))


def validate(predictor: LandmarkPredictor, samples: list[Sample], boxes: list[np.ndarray | None]) -> float:
    """Mean NME on samples, from the calibrated detector square where found, else the landmark square."""
    grays = [s.gray for s in samples]
    sq = np.stack([square_from_box(b[None, :4], predictor.cfg.haar)[0] if b is not None
                   else square_from_points(s.points) for s, b in zip(samples, boxes)])
    pred = predictor.predict(grays, sq)
    return float(nme(pred, np.stack([s.points for s in samples])).mean())


def _seed_all(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def train(cfg: TrainConfig, train_set: list[Sample], train_boxes: list[np.ndarray | None],
          val_set: list[Sample], val_boxes: list[np.ndarray | None], out_dir: str, resume: bool = False,
          log=print) -> dict:
    """Train, writing `last.pt` every epoch, `best.pt` on the best validation NME (with no held-out
    set: every epoch, so the last one is kept), and `log.jsonl`."""
    os.makedirs(out_dir, exist_ok=True)
    dev = resolve_device(cfg.device)
    cfg = replace(cfg, precision=resolve_precision(cfg.precision, dev), device=dev.type)
    _seed_all(cfg.seed)
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    mcfg = ModelCfg.named(cfg.model_name, version=cfg.version, haar=fit_calibration(train_set, train_boxes),
                          arch=cfg.model)
    model = create_model(mcfg).to(dev, memory_format=torch.channels_last)
    ema = AveragedModel(model, multi_avg_fn=get_ema_multi_avg_fn(cfg.ema), use_buffers=True) if cfg.ema else None
    shipped = ema.module if ema else model       # what is validated, checkpointed as best and exported
    bf16 = cfg.precision == "bf16"
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay,
                            fused=dev.type == "cuda")   # one kernel for all parameters, not a few per tensor
    steps_per_epoch = math.ceil(len(train_set) / cfg.batch_size)
    total, warm = cfg.epochs * steps_per_epoch, cfg.warmup_epochs * steps_per_epoch
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda k: min(1.0, (k + 1) / warm) * 0.5 * (1 + math.cos(math.pi * min(1.0, k / total))))
    start, best, history = 0, float("inf"), []
    last = os.path.join(out_dir, "last.pt")
    if resume and os.path.exists(last):
        ck = torch.load(last, map_location=dev, weights_only=True)
        begun = ModelCfg.from_dict(ck["config"])
        if (begun.name, begun.arch) != (mcfg.name, mcfg.arch):
            raise ValueError(f"{last}: begun as {begun.name} {begun.arch}, resumed as {mcfg.name} {mcfg.arch}: "
                             f"resume with the --model and --arch it was begun with")
        model.load_state_dict(ck["state_dict"])
        if ema and "ema_state_dict" in ck:
            ema.module.load_state_dict(ck["ema_state_dict"])
            ema.n_averaged.fill_(ck["ema_updates"])
        elif ema:            # begun without --ema: the new average, never updated, starts here (its first
                             # update copies the weights)
            log(f"{last} has no weight average (begun without --ema): it starts at epoch {ck['epoch'] + 2}")
        elif "ema_state_dict" in ck:
            log(f"{last} has a weight average (begun with --ema): without --ema it is left, the weights go on")
        opt.load_state_dict(ck["optimizer"])
        sched.load_state_dict(ck["scheduler"])
        start, best, history = ck["epoch"] + 1, ck["best"], json.loads(ck["history"])
        log(f"resumed from {last} at epoch {start}")
    with open(os.path.join(out_dir, "config.json"), "w") as f:
        json.dump({"train": asdict(cfg), "model": mcfg.to_dict()}, f, indent=2)
    det_squares = [None if b is None else square_from_box(b[None, :4], mcfg.haar)[0] for b in train_boxes]
    teacher, tspec = load_teacher(cfg.teacher, dev) if cfg.teacher else (None, None)
    data = LandmarkDataset(train_set, det_squares, mcfg.crop, cfg.seed, tspec)
    scale = mcfg.crop.input_size / 2
    t0 = time.time() - (history[-1]["elapsed_s"] if history else 0)
    # an order per epoch, from the epoch's seed, keeps shuffling reproducible across --resume
    order = EpochOrder(len(data), cfg.seed)
    loader = DataLoader(data, batch_size=cfg.batch_size, sampler=order, drop_last=True,
                        num_workers=cfg.workers, persistent_workers=cfg.workers > 0,
                        pin_memory=dev.type == "cuda")
    for epoch in range(start, cfg.epochs):
        order.epoch = epoch
        model.train()
        losses = []
        for batch in tqdm(loader, desc=f"epoch {epoch + 1}/{cfg.epochs}", leave=False, mininterval=5):
            x = batch["image"].to(dev, non_blocking=True).contiguous(memory_format=torch.channels_last)
            target = batch["target"].to(dev, non_blocking=True)
            pred = forward_mixed(model, x, bf16)
            loss = wing_loss(pred, target, cfg.wing_w, cfg.wing_eps, scale)
            if teacher is not None:
                soft = teacher_coords(teacher, tspec, batch["teacher_image"].to(dev, non_blocking=True), bf16,
                                      mcfg.crop)
                loss = (1 - cfg.distill) * loss + cfg.distill * wing_loss(pred, soft, cfg.wing_w, cfg.wing_eps, scale)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            if ema:
                ema.update_parameters(model)
            losses.append(loss.detach())
        model.eval()
        shipped.eval()
        # with no held-out set (train + val together) the schedule is fixed and the last epoch is kept
        due = (epoch + 1) % cfg.val_every == 0 or epoch + 1 == cfg.epochs
        val = validate(LandmarkPredictor(shipped, mcfg, dev, refine=0, flip=False), val_set, val_boxes) \
            if val_set and due else None
        row = {"epoch": epoch + 1, "loss": float(torch.stack(losses).float().mean()), "val_nme": val,
               "lr": sched.get_last_lr()[0], "elapsed_s": round(time.time() - t0, 1)}
        history.append(row)
        log(json.dumps(row))
        with open(os.path.join(out_dir, "log.jsonl"), "a") as f:
            f.write(json.dumps(row) + "\n")
        if (val is None and not val_set) or (val is not None and val < best):
            best = val if val is not None else best
            save_checkpoint(os.path.join(out_dir, "best.pt"), shipped, mcfg, epoch=epoch + 1, val_nme=val)
        extra = {"ema_state_dict": {k: v.detach().cpu() for k, v in ema.module.state_dict().items()},
                 "ema_updates": int(ema.n_averaged)} if ema else {}
        save_checkpoint(last, model, mcfg, epoch=epoch, best=best, history=json.dumps(history),
                        optimizer=opt.state_dict(), scheduler=sched.state_dict(), **extra)
    export_compact(os.path.join(out_dir, "best.pt"), os.path.join(out_dir, "model.pt"))
    return {"best_val_nme": best, "epochs": cfg.epochs, "elapsed_s": round(time.time() - t0, 1), "history": history}
