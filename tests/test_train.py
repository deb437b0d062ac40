import json
from dataclasses import replace

import numpy as np
import pytest
import torch

from facetracks.models.registry import load_model
from facetracks.training.data import load_split
from facetracks.training.train import LandmarkDataset, TrainConfig, train, wing_loss
from facetracks.training.transforms import eval_transforms


def _loss(model, samples, cfg):
    ds = LandmarkDataset(samples, [None] * len(samples), cfg.crop, seed=0)
    ds.transform = eval_transforms(cfg.crop)
    batch = [ds[i] for i in range(len(ds))]
    x = torch.stack([b["image"] for b in batch])
    y = torch.stack([b["target"] for b in batch])
    with torch.inference_mode():
        return float(wing_loss(model(x), y, 10, 2, cfg.crop.input_size / 2))


def test_two_epochs_on_32_images_lower_the_loss(data_dir, tmp_path):
    samples = load_split(data_dir, "identity", "train", limit=32)
    val = load_split(data_dir, "identity", "val", limit=8)
    boxes = [None] * 32
    boxes[0] = np.array([10, 10, 100, 100], np.float32)   # one face with a detector box
    cfg = TrainConfig(epochs=2, batch_size=8, lr=2e-3, warmup_epochs=0.5, seed=0, version="test")
    torch.manual_seed(0)
    from facetracks.models.registry import ModelCfg, create_model
    mcfg = ModelCfg.named(cfg.model_name)
    before = _loss(create_model(mcfg).eval(), samples, mcfg)
    res = train(cfg, samples, boxes, val, [None] * 8, str(tmp_path), log=lambda *_: None)
    model, mcfg = load_model(str(tmp_path / "best.pt"))
    assert len(res["history"]) == 2
    assert _loss(model, samples, mcfg) < before
    lines = (tmp_path / "log.jsonl").read_text().splitlines()
    assert [json.loads(l)["epoch"] for l in lines] == [1, 2]


def test_resume_continues_from_last_epoch(data_dir, tmp_path):
    samples = load_split(data_dir, "identity", "train", limit=16)
    cfg = TrainConfig(epochs=1, batch_size=8, seed=0, version="test")
    train(cfg, samples, [None] * 16, samples[:4], [None] * 4, str(tmp_path), log=lambda *_: None)
    cfg.epochs = 2
    msgs = []
    res = train(cfg, samples, [None] * 16, samples[:4], [None] * 4, str(tmp_path), resume=True, log=msgs.append)
    assert any("resumed" in m for m in msgs)
    assert [h["epoch"] for h in res["history"]] == [1, 2]
    with pytest.raises(ValueError, match="begun as"):     # another architecture cannot take these weights
        train(replace(cfg, epochs=3, model={"head_levels": 1}), samples, [None] * 16, samples[:4], [None] * 4,
              str(tmp_path), resume=True, log=msgs.append)


def test_bf16_forward_keeps_the_head_in_float32_and_close_to_float32():
    from facetracks.models.registry import ModelCfg, create_model
    from facetracks.models.precision import forward_mixed
    torch.manual_seed(0)
    model = create_model(ModelCfg.named("ft68-resnet-s")).eval()
    x = torch.rand(4, 1, 112, 112)
    with torch.inference_mode():
        ref = model(x)
        mixed = forward_mixed(model, x, bf16=True)
    assert mixed.dtype == torch.float32
    # bfloat16 features move an untrained net's outputs by well under a pixel of the 112 px crop
    assert (mixed - ref).abs().max().item() * 56 < 1.0
    assert not torch.equal(mixed, ref)          # autocast really ran in bfloat16


def test_training_without_a_held_out_set_keeps_the_last_epoch(data_dir, tmp_path):
    samples = load_split(data_dir, "identity", "train", limit=16)
    cfg = TrainConfig(epochs=2, batch_size=8, seed=0, version="test", precision="fp32")
    res = train(cfg, samples, [None] * 16, [], [], str(tmp_path), log=lambda *_: None)
    assert [h["val_nme"] for h in res["history"]] == [None, None]
    assert torch.load(tmp_path / "best.pt", weights_only=True)["epoch"] == 2
    assert json.loads((tmp_path / "config.json").read_text())["train"]["precision"] == "fp32"
    load_model(str(tmp_path / "model.pt"))


def test_train_command_arch_overrides_reach_the_checkpoint(data_dir, tmp_path):
    from facetracks.jobs.cli import main
    out = tmp_path / "run"
    assert main(["train", "--data", data_dir, "--out", str(out), "--model", "ft68-resnet-xs", "--epochs", "1",
                 "--limit", "8", "--batch-size", "4", "--arch", "head=heatmap", "--arch", "hidden=0",
                 "--arch", "widths=8,16,32,48", "--arch", "head_levels=3", "--arch", "expand=1.25",
                 "--arch", "input_size=48"]) == 0
    model, mcfg = load_model(str(out / "model.pt"))
    assert mcfg.arch["widths"] == (8, 16, 32, 48) and mcfg.arch["head_levels"] == 3
    assert (mcfg.crop.input_size, mcfg.crop.expand) == (48, 1.25) and "expand" not in mcfg.arch
    assert model.heatmap.side == 12
    with pytest.raises(SystemExit, match="one per stage"):       # refused before any data is read
        main(["train", "--data", str(tmp_path / "nowhere"), "--out", str(tmp_path / "bad"), "--arch", "depths=1,1"])
    assert not (tmp_path / "bad").exists()


def test_an_empty_part_leaves_the_box_cache_alone(tmp_path):
    """--include-val hands the val part over as empty: it must not overwrite a real val cache with []."""
    from facetracks.jobs.train_cmd import _boxes
    cache = tmp_path / "haar_boxes_val_identity_all.json"
    cache.write_text("[[1, 2, 3, 4]]")
    assert _boxes(str(tmp_path), "val_identity_all", [], make_detector=None) == []
    assert cache.read_text() == "[[1, 2, 3, 4]]"


def test_ema_weights_are_validated_and_shipped_and_resume(data_dir, tmp_path):
    """--ema: the average of the weights is what is validated, kept as best and exported; the
    training weights go on in last.pt beside it, and a resumed run carries the average on."""
    samples = load_split(data_dir, "identity", "train", limit=16)
    cfg = TrainConfig(epochs=1, batch_size=8, seed=0, version="test", ema=0.9)
    train(cfg, samples, [None] * 16, samples[:4], [None] * 4, str(tmp_path), log=lambda *_: None)
    last = torch.load(tmp_path / "last.pt", weights_only=True)
    best = torch.load(tmp_path / "best.pt", weights_only=True)
    assert last["ema_updates"] == 2                                  # 16 images, batches of 8
    key = "stem.0.0.weight"                                        # any weight: the average differs in each
    assert torch.equal(best["state_dict"][key], last["ema_state_dict"][key])
    assert not torch.equal(best["state_dict"][key], last["state_dict"][key])
    cfg.epochs = 2
    train(cfg, samples, [None] * 16, samples[:4], [None] * 4, str(tmp_path), resume=True, log=lambda *_: None)
    assert torch.load(tmp_path / "last.pt", weights_only=True)["ema_updates"] == 4
    load_model(str(tmp_path / "model.pt"))


def test_resume_with_ema_of_a_run_begun_without_it_starts_the_average(data_dir, tmp_path):
    samples = load_split(data_dir, "identity", "train", limit=16)
    cfg = TrainConfig(epochs=1, batch_size=8, seed=0, version="test")
    train(cfg, samples, [None] * 16, samples[:4], [None] * 4, str(tmp_path), log=lambda *_: None)
    msgs = []
    cfg = TrainConfig(epochs=2, batch_size=8, seed=0, version="test", ema=0.9)
    train(cfg, samples, [None] * 16, samples[:4], [None] * 4, str(tmp_path), resume=True, log=msgs.append)
    assert any("starts at epoch 2" in m for m in msgs)
    assert torch.load(tmp_path / "last.pt", weights_only=True)["ema_updates"] == 2    # epoch 2's two batches


def test_augmentation_is_the_same_for_any_number_of_loader_processes(data_dir):
    """--workers: each crop is drawn from (epoch seed, index), so two loader processes never repeat
    each other's draws, and 0 or 2 processes give the same batches."""
    from torch.utils.data import DataLoader
    from facetracks.models.registry import ModelCfg
    s = load_split(data_dir, "identity", "train", limit=1)
    ds = LandmarkDataset(s * 4, [None] * 4, ModelCfg.named("ft68-resnet-xs").crop, seed=3)
    alone = [b["image"] for b in DataLoader(ds, batch_size=1)]
    shared = [b["image"] for b in DataLoader(ds, batch_size=1, num_workers=2)]
    assert not torch.equal(alone[0], alone[1])                      # one image, four different crops
    assert all(torch.equal(a, b) for a, b in zip(alone, shared))


def test_epoch_order_is_a_seeded_shuffle_per_epoch_and_carries_the_epoch_seed(data_dir):
    """The loader's processes live for the whole run, so each key carries its epoch's seed."""
    from facetracks.models.registry import ModelCfg
    from facetracks.training.train import EpochOrder
    order = EpochOrder(10, seed=2)
    first = list(order)
    assert first == list(EpochOrder(10, seed=2)) and sorted(i for _, i in first) == list(range(10))
    order.epoch = 5
    assert {s for s, _ in order} == {2005} and [i for _, i in order] != [i for _, i in first]
    s = load_split(data_dir, "identity", "train", limit=1)
    ds = LandmarkDataset(s * 2, [None] * 2, ModelCfg.named("ft68-resnet-xs").crop, seed=7)
    assert torch.equal(ds[1]["image"], ds[(7, 1)]["image"])
    assert not torch.equal(ds[(7, 1)]["image"], ds[(8, 1)]["image"])


def test_a_teacher_reads_the_same_square_and_its_answer_is_in_the_students_coordinates(data_dir):
    """--teacher: each crop also comes at the teacher's size, cut from the same square before the
    photometric noise; the student's crop is drawn as without a teacher, and the teacher's
    mirrored reading lands on the labels in the student's normalised coordinates."""
    from facetracks.models.registry import ModelCfg
    from facetracks.training.train import load_teacher, teacher_coords
    s = load_split(data_dir, "identity", "train", limit=16)
    student = ModelCfg.named("ft68-resnet-xs-hm")
    teacher, tspec = load_teacher("ft68-resnet-slim-hm", torch.device("cpu"))
    plain = LandmarkDataset(s, [None] * 16, student.crop, seed=1)
    taught = LandmarkDataset(s, [None] * 16, student.crop, seed=1, teacher=tspec)
    items = [taught[i] for i in range(16)]
    assert all(torch.equal(a["image"], plain[i]["image"]) for i, a in enumerate(items))
    assert items[0]["teacher_image"].shape == (1, tspec.input_size, tspec.input_size)
    x = torch.stack([a["teacher_image"] for a in items])
    target = torch.stack([a["target"] for a in items])
    err = (teacher_coords(teacher, tspec, x, bf16=False) - target).norm(dim=-1).mean()
    assert float(err) < 0.05        # 1.6 px of a 64 px crop: the shipped teacher saw these faces
    wrong = (teacher_coords(teacher, tspec, x.flip(-1), bf16=False) - target).norm(dim=-1).mean()
    assert float(wrong) > 3 * float(err)      # the mirror undone point by point, not ignored
    # a student cropping tighter (expand 1.25) around the same squares: its labels are further out,
    # and the teacher's answer, mapped into its crop, lands on them as closely
    tight = replace(student.crop, expand=1.25)
    t_items = [LandmarkDataset(s, [None] * 16, tight, seed=1, teacher=tspec)[i] for i in range(16)]
    t_target = torch.stack([a["target"] for a in t_items])
    assert torch.allclose(t_target, target * 1.35 / 1.25, atol=1e-4)
    t_err = (teacher_coords(teacher, tspec, x, bf16=False, student=tight) - t_target).norm(dim=-1).mean()
    assert abs(float(t_err) - float(err) * 1.35 / 1.25) < 1e-4


def test_distillation_trains_with_a_teacher_cropping_wider(data_dir, tmp_path):
    """The shipped teacher crops 1.35 times the square; a student at 1.25 trains from it, and the
    distillation target scales with the crops' ratio (`teacher_coords`, tested above)."""
    samples = load_split(data_dir, "identity", "train", limit=16)
    cfg = TrainConfig(epochs=1, batch_size=8, seed=0, version="test", model_name="ft68-resnet-xs-hm",
                      teacher="ft68-resnet-slim-hm", distill=0.5)
    res = train(cfg, samples, [None] * 16, samples[:4], [None] * 4, str(tmp_path / "ok"), log=lambda *_: None)
    assert res["history"][0]["loss"] > 0
    assert json.loads((tmp_path / "ok" / "config.json").read_text())["train"]["teacher"] == "ft68-resnet-slim-hm"
    tight = train(replace(cfg, model={"expand": 1.25}), samples, [None] * 16, samples[:4], [None] * 4,
                  str(tmp_path / "tight"), log=lambda *_: None)
    assert tight["history"][0]["loss"] > 0
    assert load_model(str(tmp_path / "tight" / "model.pt"))[1].crop.expand == 1.25
