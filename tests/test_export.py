"""`plbench export model`: ONNX (run in onnxruntime) and TorchScript (torch.jit.load) round trips.

Both heads (GAP, ML-Decoder), dynamic batch (1 and 3), on the real JPEG fixtures preprocessed as the run
says. Tolerance: the exported outputs equal the PyTorch model's within 1e-4 absolute on logits and
1e-5 on sigmoid scores (measured on this CPU: below 1e-6 for both formats and heads).
"""

import json
import os

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from plbench.cli import app
from plbench.config import TrainConfig
from plbench.engine.export import ExportFormat, export_run, load_exported, metadata_path
from plbench.engine.image_files import list_images, load_pixels, preprocess
from plbench.engine.run_model import load_run_model
from plbench.errors import InputError

try:
    import onnxruntime  # noqa: F401
except ImportError:
    onnxruntime = None

if onnxruntime is None and os.environ.get("PLBENCH_REQUIRE_ONNX"):  # CI installs the extra: never skip there
    raise ImportError("PLBENCH_REQUIRE_ONNX is set but onnxruntime cannot be imported")

runner = CliRunner()
LOGIT_TOL, SCORE_TOL = 1e-4, 1e-5
FORMATS = [pytest.param(ExportFormat.ONNX, marks=pytest.mark.skipif(
               onnxruntime is None, reason="onnxruntime not installed (optional extra: pip install 'plbench[onnx]')")),
           ExportFormat.TORCHSCRIPT]
ML_DECODER = {"embed_dim": 32, "num_heads": 2, "ff_dim": 64, "num_groups": 3}


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """1-epoch resnet10t runs at 32 px on 5 synthetic classes: one per head."""
    from plbench.datasets.synthetic import write_synthetic_coco
    from plbench.engine.train import train

    base = tmp_path_factory.mktemp("export")
    write_synthetic_coco(base / "data", train=40, val=16, num_classes=5, image_size=32, seed=3)
    out = {}
    for head, options in (("gap", {}), ("ml-decoder", ML_DECODER)):
        cfg = TrainConfig(dataset="synthetic", data_root=str(base / "data"), backbone="resnet10t", head=head,
                          head_options=options, image_size=32, batch_size=16, epochs=1, lr=1e-3, seed=1,
                          device="cpu", preload=True, out_dir=str(base / "runs"), mode="ignore")
        out[head] = train(cfg, progress=False).run_dir
    return out


@pytest.fixture(scope="module")
def photo_batches(real_fixtures, runs):
    """The real photographs as model input, in batches of 1 and 3."""
    _, pre, _ = load_run_model(runs["gap"])
    paths = list_images([real_fixtures / "images"])[:4]
    x = preprocess(torch.stack([load_pixels(p, pre["image_size"]) for p in paths]), pre).numpy()
    return [x[:1], x[1:4]]


def _suffix(fmt):
    return ".onnx" if fmt is ExportFormat.ONNX else ".torchscript.pt"


@pytest.mark.slow  # trains a tiny run
@pytest.mark.parametrize("head", ["gap", "ml-decoder"])
@pytest.mark.parametrize("fmt", FORMATS)
def test_round_trip_on_real_images(runs, photo_batches, head, fmt, tmp_path):
    model, pre, names = load_run_model(runs[head])
    out = tmp_path / f"m{_suffix(fmt)}"
    result = export_run(runs[head], fmt, out, sigmoid=False, check=False)  # compared here, on real images
    assert result.path == out and result.max_abs_diff is None
    exported = load_exported(out)
    for x in photo_batches:  # batch sizes 1 and 3 through the one file
        with torch.no_grad():
            want = model(torch.from_numpy(x)).numpy()
        got = exported(x)
        assert got.shape == (len(x), len(names)) and got.dtype == np.float32
        np.testing.assert_allclose(got, want, rtol=0, atol=LOGIT_TOL)
    meta = json.loads(metadata_path(out).read_text())
    assert meta["class_names"] == names and meta["format"] == fmt.value and meta["head"] == head
    assert meta["preprocessing"]["image_size"] == 32 and meta["preprocessing"]["mean"] == pre["mean"]
    assert meta["preprocessing"]["std"] == pre["std"]
    assert meta["output"] == {"name": "logits", "shape": ["batch", 5], "sigmoid": False}
    assert meta["input"] == {"name": "images", "shape": ["batch", 3, 32, 32], "dtype": "float32"}


@pytest.mark.slow  # trains a tiny run
@pytest.mark.parametrize("fmt", FORMATS)
def test_sigmoid_scores_and_the_built_in_check(runs, photo_batches, fmt, tmp_path):
    model, _, _ = load_run_model(runs["gap"])
    result = export_run(runs["gap"], fmt, tmp_path / f"s{_suffix(fmt)}", sigmoid=True)
    assert result.max_abs_diff is not None and result.max_abs_diff <= SCORE_TOL
    assert result.metadata["output"]["name"] == "scores"
    x = photo_batches[1]
    with torch.no_grad():
        want = torch.sigmoid(model(torch.from_numpy(x)).double()).numpy()
    got = load_exported(result.path)(x)
    np.testing.assert_allclose(got, want, rtol=0, atol=SCORE_TOL)
    assert ((got > 0) & (got < 1)).all()


@pytest.mark.slow  # trains a tiny run
@pytest.mark.skipif(onnxruntime is None, reason="onnxruntime not installed (pip install 'plbench[onnx]')")
def test_onnx_graph_has_a_dynamic_batch(runs, tmp_path):
    import onnx

    path = export_run(runs["gap"], "onnx", tmp_path / "m.onnx").path
    graph = onnx.load(str(path)).graph
    onnx.checker.check_model(str(path))
    assert graph.input[0].name == "images" and graph.output[0].name == "scores"
    dims = graph.input[0].type.tensor_type.shape.dim
    assert dims[0].dim_param == "batch" and [d.dim_value for d in dims[1:]] == [3, 32, 32]


@pytest.mark.slow  # trains a tiny run
def test_cli_writes_model_and_metadata(runs):
    result = runner.invoke(app, ["export", "model", str(runs["gap"]), "--format", "torchscript", "--logits"])
    assert result.exit_code == 0, result.output
    path = runs["gap"] / "export" / "model-last-logits.torchscript.pt"
    assert path.is_file() and metadata_path(path).is_file()
    assert "checked: largest difference from PyTorch" in result.stdout

    result = runner.invoke(app, ["export", "model", str(runs["gap"]), "--format", "tflite"])
    assert result.exit_code == 2 and "onnx, torchscript" in result.stderr
    result = runner.invoke(app, ["export", "model", str(runs["gap"]), "--format", "onnx", "--out", "m.pt"])
    assert result.exit_code == 2 and "ending in .onnx" in result.stderr
    result = runner.invoke(app, ["export", "--help"])
    assert "fiftyone" in result.stdout and "model" in result.stdout  # the FiftyOne export is still there


def test_unknown_file_kind_is_an_input_error(tmp_path):
    with pytest.raises(InputError, match=".onnx or .torchscript.pt"):
        load_exported(tmp_path / "model.bin")
