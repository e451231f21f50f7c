"""End to end: a small demo configuration through the same code path as `plbench demo`."""

import numpy as np

from plbench.demo import DemoSettings, run_demo


def test_small_demo_end_to_end(tmp_path):
    settings = DemoSettings(out=str(tmp_path), train_images=120, val_images=60, num_classes=6, data_image_size=48,
                            image_size=32, epochs=1, batch_size=32, fpc=10, rps=0.8)
    said = []
    paths = run_demo(settings, progress=False, say=said.append)
    assert said[0].startswith("[1/13]") and said[-1].startswith("done in")
    md = paths["md"].read_text()
    assert md.splitlines()[2].startswith("Regenerate with: `plbench demo --out ")
    for row in ("| full |", "| fpc10 |", "| rps0.8 |"):
        assert row in md
    for mode in ("negative", "ignore", "selective"):
        assert mode in md
    runs = sorted(p.name for p in (tmp_path / "runs").iterdir())
    assert len(runs) == 7
    assert len(list((tmp_path / "simulations").glob("*.parquet"))) == 2
    priors = sorted((tmp_path / "priors").glob("*.csv"))
    assert len(priors) == 2
    values = np.loadtxt(priors[0], delimiter=",", skiprows=1, usecols=1)
    assert values.shape == (6,) and ((values > 0) & (values < 1)).all()
    assert paths["html"].read_text().startswith("<!doctype html>")
