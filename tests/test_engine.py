"""The training engine on tiny synthetic data and on the real COCO 2017 sample."""

import json

import numpy as np
import pytest
import torch

from plbench.config import TrainConfig
from plbench.engine.train import train
from plbench.errors import InputError


@pytest.fixture(scope="module")
def tiny_data(tmp_path_factory):
    from plbench.datasets.synthetic import write_synthetic_coco

    root = tmp_path_factory.mktemp("tiny") / "synthetic"
    write_synthetic_coco(root, train=48, val=24, num_classes=5, image_size=32, seed=3)
    return root


def _config(root, out, **kw):
    base = dict(dataset="synthetic", data_root=str(root), backbone="resnet10t", head="gap", image_size=32,
                batch_size=16, epochs=2, lr=1e-3, seed=1, device="cpu", preload=True, out_dir=str(out),
                mode="ignore")
    base.update(kw)
    return TrainConfig(**base)


def _weights(model):
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def test_run_folder_contents(tiny_data, tmp_path):
    result = train(_config(tiny_data, tmp_path), progress=False)
    d = result.run_dir
    assert d.name == "synthetic-full-ignore-resnet10t-gap-s1"
    for name in ("config.json", "metrics.jsonl", "last.pt", "best.pt", "predictions.npz", "summary.json"):
        assert (d / name).is_file(), name
    lines = [json.loads(x) for x in (d / "metrics.jsonl").read_text().splitlines()]
    assert [x["epoch"] for x in lines] == [0, 1]
    s = json.loads((d / "summary.json").read_text())
    assert s["val_map"] == lines[-1]["val_map"]
    assert s["best_val_map"] == max(x["val_map"] for x in lines)
    pred = np.load(d / "predictions.npz")
    assert pred["scores"].shape == (24, 5) and pred["scores"].dtype == np.float32
    assert ((pred["scores"] >= 0) & (pred["scores"] <= 1)).all()
    assert list(pred["class_names"]) == s["class_names"]
    # the saved scores reproduce the summary's mAP with an independent per-class AP
    from sklearn.metrics import average_precision_score

    aps = [average_precision_score(pred["targets"][:, c], pred["scores"][:, c]) for c in range(5)
           if 0 < pred["targets"][:, c].sum() < 24]
    assert s["val_map"] == pytest.approx(100 * np.mean(aps), abs=1e-6)


def test_same_seed_same_weights(tiny_data, tmp_path):
    a = train(_config(tiny_data, tmp_path / "a", epochs=1), progress=False)
    b = train(_config(tiny_data, tmp_path / "b", epochs=1), progress=False)
    wa, wb = _weights(a.model), _weights(b.model)
    assert all(torch.equal(wa[k], wb[k]) for k in wa)
    c = train(_config(tiny_data, tmp_path / "c", epochs=1, seed=2), progress=False)
    assert not all(torch.equal(wa[k], v) for k, v in _weights(c.model).items() if v.is_floating_point())


def test_resume_equals_uninterrupted(tiny_data, tmp_path):
    full = train(_config(tiny_data, tmp_path / "full"), progress=False)

    class Stop(Exception):
        pass

    def stop(record):
        raise Stop

    cfg = _config(tiny_data, tmp_path / "cut")
    with pytest.raises(Stop):
        train(cfg, progress=False, on_epoch=stop)
    resumed = train(cfg, progress=False)
    wf, wr = _weights(full.model), _weights(resumed.model)
    assert all(torch.equal(wf[k], wr[k]) for k in wf)
    lines = (resumed.run_dir / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(x)["epoch"] for x in lines] == [0, 1]
    # a finished run is returned as is
    again = train(cfg, progress=False)
    assert again.summary == resumed.summary


def test_other_config_in_same_folder_is_refused(tiny_data, tmp_path):
    train(_config(tiny_data, tmp_path, epochs=1, run_name="r"), progress=False)
    with pytest.raises(InputError, match="different configuration"):
        train(_config(tiny_data, tmp_path, epochs=1, run_name="r", lr=5e-4), progress=False)


def test_selective_with_simulation_prior_and_ml_decoder(tiny_data, tmp_path):
    from plbench.artifacts.simulations import save_simulation
    from plbench.datasets import load_dataset
    from plbench.priors import write_prior_csv
    from plbench.simulate import simulate

    split = load_dataset("synthetic", tiny_data, "train")
    sim = simulate(split.labels, "fpc", 4, 0)
    sim_path = tmp_path / "sim.parquet"
    save_simulation(sim_path, sim, dataset="synthetic", fingerprint=split.fingerprint, scheme="fpc", param=4, seed=0)
    prior_path = tmp_path / "prior.csv"
    write_prior_csv(prior_path, split.class_names, np.linspace(0.1, 0.9, 5))
    cfg = _config(tiny_data, tmp_path / "runs", epochs=1, mode="selective", simulation=str(sim_path),
                  prior=str(prior_path), head="ml-decoder",
                  head_options={"num_groups": -1, "embed_dim": 32, "num_heads": 2, "ff_dim": 64},
                  loss_options={"likelihood_topk": 1})  # the default 5 >= 5 classes would ignore every unannotated
    result = train(cfg, progress=False)
    s = result.summary
    assert s["labels"] == "fpc4" and s["mode"] == "selective" and s["head"] == "ml-decoder"
    assert s["train_annotated_fraction"] == pytest.approx(sim.annotated_fraction())
    assert np.isfinite(s["val_map"])
    # the prior reaches the loss: without it (classes 3 and 4 have prior > 0.5) the weights differ; with its
    # rows in another order the weights are the same (a prior is matched to the classes by name)
    no_prior = train(cfg.replace(prior=None, out_dir=str(tmp_path / "no-prior")), progress=False)
    assert not all(torch.equal(a, b) for a, b in zip(_weights(result.model).values(),
                                                     _weights(no_prior.model).values()))
    shuffled = tmp_path / "shuffled.csv"
    order = [3, 0, 4, 2, 1]
    write_prior_csv(shuffled, [split.class_names[i] for i in order], np.linspace(0.1, 0.9, 5)[order])
    same = train(cfg.replace(prior=str(shuffled), out_dir=str(tmp_path / "shuffled")), progress=False)
    assert all(torch.equal(a, b) for a, b in zip(_weights(result.model).values(), _weights(same.model).values()))


def test_simulation_of_another_dataset_is_refused(tiny_data, tmp_path):
    from plbench.artifacts.simulations import save_simulation
    from plbench.datasets import load_dataset
    from plbench.simulate import simulate

    split = load_dataset("synthetic", tiny_data, "train")
    sim_path = tmp_path / "sim.parquet"
    save_simulation(sim_path, simulate(split.labels, "rps", 0.5, 0), dataset="synthetic",
                    fingerprint="0" * 64, scheme="rps", param=0.5, seed=0)
    with pytest.raises(InputError, match="fingerprint"):
        train(_config(tiny_data, tmp_path / "runs", epochs=1, simulation=str(sim_path)), progress=False)


def _mean_sigmoid_over_images(model, paths, backbone):
    """Independent reference: decode with PIL, normalise with timm's mean/std, one forward, mean per class."""
    import timm
    from PIL import Image

    cfg = timm.get_pretrained_cfg(backbone).to_dict()
    x = np.stack([np.asarray(Image.open(p).convert("RGB"), np.float32) for p in paths]) / 255  # 32 px already
    x = (x - np.array(cfg["mean"])) / np.array(cfg["std"])
    with torch.no_grad():
        return torch.sigmoid(model.eval()(torch.from_numpy(x.astype(np.float32)).permute(0, 3, 1, 2))).double().mean(0)


def test_prior_estimation(tiny_data, tmp_path):
    from plbench.artifacts.simulations import save_simulation
    from plbench.datasets import load_dataset
    from plbench.engine.prior import estimate_prior
    from plbench.simulate import simulate

    split = load_dataset("synthetic", tiny_data, "train")
    sim_path = tmp_path / "sim.parquet"  # partial labels: Ignore and Negative train different models
    save_simulation(sim_path, simulate(split.labels, "fpc", 4, 0), dataset="synthetic", fingerprint=split.fingerprint,
                    scheme="fpc", param=4, seed=0)
    # the run asks for Negative mode; its prior model must still be trained in Ignore mode (CSL)
    names, prior = estimate_prior(_config(tiny_data, tmp_path / "runs", epochs=1, mode="negative",
                                          simulation=str(sim_path)), progress=False)
    assert names == split.class_names and prior.shape == (5,)
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").iterdir())
    # the prior is the mean score over the TRAINING images of the Ignore-mode model (same seed, same weights);
    # the validation images' mean differs by ~5e-4 and the Negative-mode model's by more
    model = train(_config(tiny_data, tmp_path / "ref", epochs=1, mode="ignore", simulation=str(sim_path)),
                  progress=False).model
    np.testing.assert_allclose(prior, _mean_sigmoid_over_images(model, split.image_paths, "resnet10t").numpy(),
                               rtol=0, atol=1e-6)


def test_one_epoch_on_real_coco_sample(real_fixtures, tmp_path):
    root = real_fixtures / "coco2017_sample"
    cfg = TrainConfig(dataset="coco", data_root=str(root), backbone="resnet10t", image_size=64, batch_size=16,
                      epochs=1, device="cpu", out_dir=str(tmp_path), mode="negative")
    result = train(cfg, progress=False)
    s = result.summary
    assert s["num_classes"] == 80 and s["train_images"] == 32 and s["val_images"] == 6
    assert s["classes_evaluated"] + s["classes_skipped"] == 80
    assert np.isfinite(s["val_map"])


def test_single_positive_simulation_trains(tiny_data, tmp_path):
    from plbench.artifacts.simulations import save_simulation
    from plbench.datasets import load_dataset
    from plbench.simulate import simulate

    split = load_dataset("synthetic", tiny_data, "train")
    sim_path = tmp_path / "spl.parquet"
    save_simulation(sim_path, simulate(split.labels, "spl", None, 0), dataset="synthetic",
                    fingerprint=split.fingerprint, scheme="spl", param=None, seed=0)
    result = train(_config(tiny_data, tmp_path / "runs", epochs=1, simulation=str(sim_path)), progress=False)
    assert result.summary["labels"] == "spl"
    assert result.run_dir.name == "synthetic-spl-ignore-resnet10t-gap-s1"


def test_changed_data_is_not_resumed(tmp_path):
    from plbench.datasets.synthetic import write_synthetic_coco

    root = tmp_path / "data"
    write_synthetic_coco(root, train=20, val=10, num_classes=3, image_size=32, seed=0)
    cfg = _config(root, tmp_path / "runs", epochs=1)
    train(cfg, progress=False)
    write_synthetic_coco(root, train=20, val=10, num_classes=3, image_size=32, seed=1)  # same paths, new data
    with pytest.raises(InputError, match="differ from those this run was trained on"):
        train(cfg, progress=False)


def test_cache_prefix_and_undecodable_images_are_skipped(tmp_path):
    from plbench.datasets import load_dataset
    from plbench.datasets.images import build_image_cache, cache_folder
    from plbench.datasets.synthetic import write_synthetic_coco

    root = tmp_path / "data"
    write_synthetic_coco(root, train=20, val=10, num_classes=3, image_size=32, seed=0)
    val = load_dataset("synthetic", root, "val")
    broken = val.image_paths[4]
    with open(broken, "r+b") as f:  # truncate the JPEG: undecodable
        f.truncate(100)
    train_paths = load_dataset("synthetic", root, "train").image_paths
    build_image_cache(train_paths, 32, cache_folder(root / "cache", "synthetic", "train", 32), workers=1)
    # the training images come from the cache (a prefix of it), the validation images are decoded
    cfg = _config(root, tmp_path / "runs", epochs=1, batch_size=4, max_train_images=13, preload=False)
    result = train(cfg, progress=False)  # 13 = 3 batches of 4 + 1: a last batch of one is dropped (BatchNorm)
    s = result.summary
    assert s["train_images"] == 13 and s["val_images"] == 9 and s["val_images_skipped"] == 1
    pred = np.load(result.run_dir / "predictions.npz", allow_pickle=False)
    assert broken not in set(pred["image_paths"]) and len(pred["image_paths"]) == 9
    # a batch made only of undecodable images is skipped
    from plbench.engine.evaluate import predict
    from plbench.engine.inputs import make_dataset, make_loader, normalization

    one = cfg.replace(batch_size=1)
    loader = make_loader(make_dataset(one, "val", val.image_paths, val.labels, train=False), one)
    mean, std = normalization(one)
    scores, targets, index = predict(result.model, loader, torch.device("cpu"), mean=mean, std=std)
    assert index.tolist() == [0, 1, 2, 3, 5, 6, 7, 8, 9] and scores.shape == (9, 3)
    np.testing.assert_array_equal(targets, val.labels.to_dense()[index])
    # reading the training split from the cache: 12 of its 20 rows

    ds = make_dataset(cfg.replace(cache_dir=str(root / "cache")), "train", train_paths[:12],
                      load_dataset("synthetic", root, "train").labels.subset(np.arange(12)), train=False)
    assert ds.cache is not None and len(ds) == 12
    x, y, i = ds[11]
    assert x.shape == (3, 32, 32) and i == 11


def test_checkpoint_of_another_architecture_is_refused(tiny_data, tmp_path):
    import timm

    other = tmp_path / "other.pt"
    torch.save(timm.create_model("resnet18", num_classes=0).state_dict(), other)
    with pytest.raises(InputError, match="tensors match by name"):
        train(_config(tiny_data, tmp_path / "runs", epochs=1, checkpoint=str(other)), progress=False)
    own = tmp_path / "own.pt"
    torch.manual_seed(1234)  # not the run's seed: these weights differ from the run's own initialisation
    saved = timm.create_model("resnet10t", num_classes=7).state_dict()
    torch.save({"state_dict": saved}, own)
    # lr 0: the parameters stay where they started, so the trained backbone shows what was loaded
    result = train(_config(tiny_data, tmp_path / "runs2", epochs=1, checkpoint=str(own), lr=0.0), progress=False)
    assert np.isfinite(result.summary["val_map"])
    params = dict(result.model.backbone.named_parameters())
    assert len(params) > 10 and all(torch.equal(p, saved[k]) for k, p in params.items())
    scratch = train(_config(tiny_data, tmp_path / "runs3", epochs=1, lr=0.0), progress=False)
    assert not torch.equal(scratch.model.backbone.conv1[0].weight, saved["conv1.0.weight"])


def test_prior_model_uses_an_ignore_capable_loss():
    from plbench.choices import Mode
    from plbench.engine.prior import prior_model_config

    base = TrainConfig()
    assert prior_model_config(base.replace(loss="bce", mode="negative"), Mode.IGNORE, "x", False).loss == "bce"
    assert prior_model_config(base, Mode.IGNORE, "x", False).mode == "ignore"
    # single-positive losses have no Ignore mode: the prior model falls back to P-ASL without their options
    cfg = prior_model_config(base.replace(loss="epr", mode=None, loss_options={"expected_num_pos": 2.9}),
                             Mode.IGNORE, "x", False)
    assert (cfg.loss, cfg.mode, cfg.loss_options) == ("pasl", "ignore", {})
