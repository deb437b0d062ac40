import os

import numpy as np
import pytest
import torch

from facetracks.models.inference import LandmarkPredictor
from facetracks.models.landmark_net import fused_for_inference
from facetracks.models.registry import (ARCHS, DEFAULT_MODEL, ModelCfg, create_model, default_weights, load_checkpoint,
                                        load_model, save_checkpoint)
from facetracks.pipeline.detect import HaarDetector
from facetracks.training.evaluate import evaluate


def test_forward_shape_and_finite():
    m = create_model(ModelCfg.named(DEFAULT_MODEL)).eval()
    with torch.inference_mode():
        y = m(torch.rand(3, 1, 112, 112))
    assert y.shape == (3, 68, 2) and torch.isfinite(y).all()


def test_checkpoint_round_trip_is_weights_only(tmp_path):
    m = create_model(ModelCfg.named(DEFAULT_MODEL))
    p = str(tmp_path / "w.pt")
    save_checkpoint(p, m, ModelCfg.named(DEFAULT_MODEL, version="t1"), compact=True)
    m2, cfg = load_model(p)
    assert cfg.version == "t1"
    x = torch.rand(2, 1, 112, 112)
    m.eval()
    with torch.inference_mode():
        assert torch.allclose(m(x), m2(x), atol=2e-2)
    torch.save({"format": "something else"}, tmp_path / "bad.pt")
    with pytest.raises(ValueError, match="bad.pt"):
        load_checkpoint(str(tmp_path / "bad.pt"))


@pytest.mark.parametrize("name", sorted(ARCHS))
def test_shipped_weights_are_small_versioned_and_match_their_arch(name):
    p = default_weights(name)
    assert os.path.getsize(p) <= 5 * 1024 * 1024
    m, cfg = load_model(name)                     # a shipped name resolves to its file
    assert cfg.name == name and cfg.version not in ("", "dev", "untrained")
    assert cfg.crop == ARCHS[name].crop and cfg.arch == ARCHS[name].net()   # what inference crops is what it learnt
    x = torch.rand(4, 1, cfg.crop.input_size, cfg.crop.input_size)
    with torch.inference_mode():
        assert m(x).shape == (4, 68, 2)


def test_crop_and_network_need_an_explicit_spec():
    """No silent defaults: a crop or a network made without its model's spec is an error."""
    from facetracks.models.crop import CropSpec
    from facetracks.models.landmark_net import LandmarkNet
    from facetracks.training.transforms import CropToInput, Normalize
    for make in (CropSpec, LandmarkNet, CropToInput, Normalize, ModelCfg):
        with pytest.raises(TypeError):
            make()


def _with_batchnorm_statistics(m: torch.nn.Module) -> torch.nn.Module:
    """BatchNorm statistics that are not the identity (an untrained net's are), so folding them is
    really tested; in eval mode."""
    for mod in m.modules():
        if isinstance(mod, torch.nn.BatchNorm2d):
            mod.running_mean.uniform_(-0.5, 0.5)
            mod.running_var.uniform_(0.5, 2.0)
            mod.weight.data.uniform_(0.5, 1.5)
    return m.eval()


def test_fused_model_gives_the_same_points():
    m = _with_batchnorm_statistics(create_model(ModelCfg.named("ft68-resnet-xs")))
    f = fused_for_inference(m)
    assert not any(isinstance(mod, torch.nn.BatchNorm2d) for mod in f.modules())
    x = torch.rand(5, 1, 64, 64)
    with torch.inference_mode():
        torch.testing.assert_close(f(x.contiguous(memory_format=torch.channels_last)), m(x), atol=1e-4, rtol=1e-4)


def test_shipped_model_meets_the_accuracy_bar(data_dir):
    """Identity-disjoint test split (854 images, 69 identities), Haar boxes.

    Measured with accurate's detector: 3.84 % mean NME (ft68-resnet-slim-hm; 3.87 % ft68-resnet-s-hm,
    3.96 % before the heatmap head), 0.35 % failures, 99.3 % found; the first bar was 4.0 % (issue
    15's is 3.6 %, not met yet)."""
    res = evaluate(LandmarkPredictor.load(), data_dir, "identity", "haar", HaarDetector().detect)
    assert res["images"] == 854
    assert res["faces_found"] >= 0.95
    assert res["nme_mean"] <= 0.040
    assert res["failure_rate"] <= 0.01


def test_fast_profile_keeps_accuracy_close(data_dir):
    """The fast profile's model, passes and detector on the same split. Measured: 4.07 % mean NME,
    97.7 % found (its 320 px, coarser detector misses more stills; video retries)."""
    from facetracks.pipeline.profiles import load_profile
    p = load_profile("fast")
    res = evaluate(p.predictor, data_dir, "identity", "haar", p.detector.detect)
    assert res["model"].startswith("ft68-resnet-xs-hm@")
    assert res["faces_found"] >= 0.95
    assert res["nme_mean"] <= 0.043
    assert res["failure_rate"] <= 0.01


def test_score_separates_faces_from_non_faces(data_dir):
    from facetracks.training.data import load_split
    from facetracks.models.crop import square_from_points
    s = load_split(data_dir, "identity", "test", limit=20)
    pred = LandmarkPredictor.load()
    _, face = pred.predict_with_score([x.gray for x in s], square_from_points(np.stack([x.points for x in s])))
    noise = [np.random.default_rng(i).integers(0, 255, (200, 200), np.uint8) for i in range(20)]
    _, junk = pred.predict_with_score(noise, np.tile([100, 100, 90], (20, 1)))
    assert np.median(face) > 0.5 and np.median(face) > np.median(junk) + 0.2


def test_bf16_points_match_float32(data_dir):
    """The mixed precision a CPU with native bfloat16 runs by default (bfloat16 convolutions,
    float32 head: how the weights were trained) against float32, on real faces. Forced on here,
    so it is checked on any CPU (emulated bfloat16 is only slower). Measured with ft68-resnet-s
    (40 faces): mean 0.06 %, worst 0.23 % of the inter-ocular distance; identity-test NME 3.944 %
    either way."""
    from dataclasses import replace

    from facetracks.models.crop import square_from_points
    from facetracks.models.precision import native_bf16
    from facetracks.training.data import load_split
    from facetracks.training.metrics import nme
    fp32 = LandmarkPredictor.load(half=False)
    assert not fp32.bf16
    assert LandmarkPredictor.load().bf16 == native_bf16()      # the default: bfloat16 only where native
    s = load_split(data_dir, "identity", "test", limit=40)
    grays, squares = [x.gray for x in s], np.stack([square_from_points(x.points) for x in s])
    a = fp32.predict(grays, squares)
    b = replace(fp32, bf16=True).predict(grays, squares)
    assert not np.array_equal(a, b)                            # bfloat16 really ran
    moved = nme(b, a)                                          # per face, in inter-ocular distances
    assert moved.mean() < 0.002 and moved.max() < 0.01


def test_a_bfloat16_body_gives_autocasts_points_without_its_casts():
    """Where it runs bfloat16, `LandmarkPredictor.load` keeps the body's weights in bfloat16 once
    instead of letting autocast cast them on every call: the same arithmetic, so the same points
    (bit for bit on this CPU; within 1e-4 of the crop, 0.006 px at 112 px, on any), head float32."""
    import copy
    from facetracks.models.landmark_net import fused_for_inference
    from facetracks.models.precision import forward_mixed
    from facetracks.models.registry import load_model
    for name in ("ft68-resnet-slim-hm", "ft68-resnet-xs"):
        model, cfg = load_model(name)
        model = fused_for_inference(model)
        body = copy.deepcopy(model).body_to(torch.bfloat16)
        assert next(body.stem.parameters()).dtype == torch.bfloat16
        assert next((body.heatmap if body.head == "heatmap" else body.fc).parameters()).dtype == torch.float32
        size = cfg.crop.input_size
        x = torch.rand(4, 1, size, size, generator=torch.Generator().manual_seed(0))
        x = x.contiguous(memory_format=torch.channels_last)
        with torch.inference_mode():
            a, b = forward_mixed(model, x, True), forward_mixed(body, x, True)
        assert b.dtype == torch.float32 and float((a - b).abs().max()) < 1e-4


def test_settled_faces_skip_the_refine_pass(data_dir):
    """`accurate` in video: a face cut from the square around its own points (a followed face that
    barely moved) keeps its first answer; one cut from a square a sixth of a side off is refined,
    as before. The first answers stay within a fraction of a percent of the inter-ocular distance
    of the refined ones (measured, 20 faces: mean 0.09 %, worst 0.39 %; all 20 settled)."""
    from dataclasses import replace

    from facetracks.models.crop import square_from_points
    from facetracks.pipeline.profiles import load_profile
    from facetracks.training.data import load_split
    from facetracks.training.metrics import nme
    pred = load_profile("accurate").predictor
    assert pred.settled_move > 0 and pred.settled_score > 0.45
    always = replace(pred, settled_move=0.0)
    s = load_split(data_dir, "identity", "test", limit=20)
    grays = [x.gray for x in s]
    followed = square_from_points(always.predict(grays, square_from_points(np.stack([x.points for x in s]))))
    off = followed + np.array([1, 0, 0]) * followed[:, 2:] / 6
    squares = np.concatenate([followed[:10], off[10:]])
    pts, parts = pred.predict_with_parts(grays, squares)
    ref, ref_parts = always.predict_with_parts(grays, squares)
    settled = np.isnan(parts.passes)
    assert settled[:10].sum() >= 8 and not settled[10:].any() and not np.isnan(ref_parts.passes).any()
    assert (parts.score[settled] >= pred.settled_score).all()
    np.testing.assert_allclose(pts[~settled], ref[~settled], atol=0.05)    # the same passes, in a smaller batch
    assert nme(pts[settled], ref[settled]).mean() < 0.005


def test_heatmap_head_puts_a_point_at_its_cell_plus_offset():
    """A near one-hot cell and a known offset: the point is that cell's centre moved by the offset
    (in cell sides), in crop-normalised coordinates (-1 and +1 the crop's edges)."""
    from facetracks.models.landmark_net import HeatmapHead
    head = HeatmapHead(cin=6, side=7, num_points=2)
    head.out = torch.nn.Identity()                      # feed it the conv's output directly
    o = torch.zeros(3, 6, 7, 7)
    o[:, 0, 0, 0] = o[:, 1, 3, 6] = 50.0                # point 0 in the top-left cell, point 1 in row 3, column 6
    o[:, 2:4] = 0.25                                    # point 0's offset (x, y): a quarter cell everywhere
    y = head(o)
    cell = 2 / 7
    torch.testing.assert_close(y[:, 0], torch.full((3, 2), -1 + 0.75 * cell), atol=1e-4, rtol=0)
    torch.testing.assert_close(y[:, 1], torch.tensor([-1 + 6.5 * cell, -1 + 3.5 * cell]).expand(3, 2),
                               atol=1e-4, rtol=0)


def test_heatmap_head_is_the_probability_weighted_mean_of_cell_centre_plus_offset():
    """The head's sums, taken cells-major for speed, are the plain formula: for each point, the
    softmax over cells of its logits times (cell centre + offset * 2 / side), summed over cells;
    from a channels-last map (inference) as from a contiguous one (training), gradients included."""
    from facetracks.models.landmark_net import HeatmapHead
    head = HeatmapHead(cin=5, side=4, num_points=3)
    feats = torch.randn(2, 5, 4, 4, generator=torch.Generator().manual_seed(0), requires_grad=True)
    o = head.out(feats).flatten(2)                                     # (B, 3P, cells)
    prob = o[:, :3].softmax(-1)
    pos = head.centres + o[:, 3:].unflatten(1, (3, 2)) * (2.0 / 4)     # (B, P, 2, cells)
    want = (prob.unsqueeze(2) * pos).sum(-1)
    got = head(feats)
    torch.testing.assert_close(got, want, atol=1e-6, rtol=0)
    torch.testing.assert_close(head(feats.contiguous(memory_format=torch.channels_last)), want, atol=1e-6, rtol=0)
    g_got, = torch.autograd.grad(got.square().sum(), feats)
    g_want, = torch.autograd.grad(want.square().sum(), feats)
    torch.testing.assert_close(g_got, g_want, atol=1e-5, rtol=1e-5)


def test_face_contrast_is_the_grey_level_deviation_of_the_face_square():
    """The score's flat-crop guard: the sample standard deviation (n - 1), in grey levels, of the
    crop less its `expand` margin."""
    from facetracks.models.crop import CropSpec
    from facetracks.models.inference import face_contrast
    crops = np.random.default_rng(0).integers(0, 256, (4, 64, 64)).astype(np.float32)
    crops[1] = 7.0                                                     # flat: 0
    got = face_contrast(torch.from_numpy(crops / 255)[:, None], CropSpec(64, 1.35)).numpy()
    m = int(round(64 * (1 - 1 / 1.35) / 2))
    want = crops[:, m:64 - m, m:64 - m].reshape(4, -1).std(axis=1, ddof=1)
    np.testing.assert_allclose(got, want, atol=1e-3)
    assert got[1] < 1e-3


def test_a_predictor_with_threads_runs_its_network_on_that_many_and_gives_the_rest_back(data_dir):
    """`fast` reads its crops on one torch thread (its convolutions are too small to split while
    the decoder needs the other core); the count torch had is back after the call, for whatever
    else the process runs (the accurate model, training). A predictor without it uses torch's."""
    from dataclasses import replace

    from facetracks.models.crop import square_from_points
    from facetracks.training.data import load_split
    s = load_split(data_dir, "identity", "test", limit=3)
    grays, squares = [x.gray for x in s], square_from_points(np.stack([x.points for x in s]))
    pred = LandmarkPredictor.load("ft68-resnet-xs-hm", refine=1, flip=False, flip_last=True, threads=1)
    seen = []
    pred.model.stem.register_forward_pre_hook(lambda *_: seen.append(torch.get_num_threads()))
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        one = pred.predict(grays, squares)
        assert seen == [1, 1] and torch.get_num_threads() == 2       # first pass, then refine + mirror
        seen.clear()
        torch.testing.assert_close(replace(pred, threads=0).predict(grays, squares), one, atol=0.05, rtol=0)
        assert seen == [2, 2]
    finally:
        torch.set_num_threads(before)


def test_a_heatmap_head_network_fuses_saves_and_loads(tmp_path):
    cfg = ModelCfg.named("ft68-resnet-xs")
    cfg.arch.update(head="heatmap", head_channels=32, hidden=0)
    m = create_model(cfg).eval()
    x = torch.rand(3, 1, 64, 64)
    with torch.inference_mode():
        torch.testing.assert_close(fused_for_inference(m)(x.contiguous(memory_format=torch.channels_last)), m(x),
                                   atol=1e-4, rtol=1e-4)
    p = str(tmp_path / "hm.pt")
    save_checkpoint(p, m, cfg, compact=True)
    m2, cfg2 = load_model(p)
    assert cfg2.arch["head"] == "heatmap" and not hasattr(m2, "fc")
    with torch.inference_mode():
        assert torch.allclose(m(x), m2(x), atol=2e-2)


def test_a_two_level_heatmap_head_reads_a_map_of_twice_the_side_and_survives_fusing_and_saving(tmp_path):
    cfg = ModelCfg.named("ft68-resnet-xs", arch={"head": "heatmap", "head_channels": 32, "hidden": 0, "head_levels": 2})
    m = _with_batchnorm_statistics(create_model(cfg))
    assert m.heatmap.side == 2 * 64 // 16 and m.heatmap.centres.shape == (2, 64)
    x = torch.rand(3, 1, 64, 64)
    f = fused_for_inference(m)
    assert not any(isinstance(mod, torch.nn.BatchNorm2d) for mod in f.modules())
    with torch.inference_mode():
        assert m.forward_features(x).shape == (3, 32, 8, 8)
        torch.testing.assert_close(f(x.contiguous(memory_format=torch.channels_last)), m(x), atol=1e-4, rtol=1e-4)
    p = str(tmp_path / "hm2.pt")
    save_checkpoint(p, m, cfg, compact=True)
    m2, cfg2 = load_model(p)
    assert cfg2.arch["head_levels"] == 2 and len(m2.laterals) == 1
    with torch.inference_mode():
        assert torch.allclose(m(x), m2(x), atol=2e-2)
    with pytest.raises(ValueError, match="head_levels"):
        create_model(ModelCfg.named("ft68-resnet-xs", arch={"head_levels": 2}))
    with pytest.raises(ValueError, match="one per stage"):
        create_model(ModelCfg.named("ft68-resnet-xs", arch={"depths": [1, 1]}))
