"""Zero-shot runs through the engine (plbench.engine.zero_shot): training sees the seen classes only (images
without a seen positive dropped and counted), the head's queries come from the class embeddings, and the
summary's ZSL / GZSL numbers equal an independent computation (sklearn AP, a numpy top-K) on the returned
model's scores; the linear protocol reads a token store; bad combinations are InputErrors."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from sklearn.metrics import average_precision_score

from plbench.config import TrainConfig
from plbench.errors import InputError
from features_support import random_backbone_stores

UNSEEN = ("red_checkered_star", "cyan_dotted_bar", "blue_striped_square")  # classes of the 12-class design


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    base = tmp_path_factory.mktemp("zsl")
    root, features, weights = random_backbone_stores(base, train=60, val=30, num_classes=12, data_seed=5,
                                                     torch_seed=7, tokens=True)
    split_file = base / "unseen.txt"
    split_file.write_text("# held out\n" + "\n".join(UNSEEN) + "\n")
    return root, features, weights, split_file


def _config(setup, out, **kw):
    root, features, weights, split_file = setup
    cfg = dict(dataset="synthetic", data_root=str(root), features=str(features), backbone="resnet10t",
               checkpoint=str(weights), head="ml-decoder", image_size=32, batch_size=16, epochs=2, lr=1e-3, seed=1,
               device="cpu", out_dir=str(out), mode="negative", zsl_split=str(split_file), class_embeddings="glove",
               head_options={"embed_dim": 32, "num_heads": 2, "ff_dim": 64})
    cfg.update(kw)
    return TrainConfig(**cfg)


def _reference_top_k_f1(scores, targets, k):
    top = np.argsort(-scores, axis=1, kind="stable")[:, :k]
    tp = sum(targets[i, top[i]].sum() for i in range(len(scores)))
    p, r = tp / (len(scores) * k), tp / targets.sum()
    return 100 * 2 * p * r / (p + r)


def test_linear_zero_shot_run_matches_an_independent_evaluation(setup, tmp_path):
    from plbench.artifacts.features import FeatureStore
    from plbench.datasets import load_dataset
    from plbench.embeddings import class_embeddings
    from plbench.engine.train import train

    cfg = _config(setup, tmp_path)
    result = train(cfg, progress=False)
    s = result.summary
    root = setup[0]
    train_split = load_dataset("synthetic", root, "train")
    names = train_split.class_names
    seen = [c for c in names if c not in UNSEEN]
    dense = train_split.labels.to_dense()
    seen_cols = [names.index(c) for c in seen]
    kept = int((dense[:, seen_cols] == 1).any(1).sum())
    zs = s["zero_shot"]
    assert s["class_names"] == seen and zs["num_seen"] == 9 and zs["num_unseen"] == 3
    assert s["train_images"] == kept and zs["dropped_train_images"] == len(dense) - kept > 0
    assert zs["embeddings"] == "glove" and zs["prompt"] is None and zs["embedding_dim"] == 50
    assert json.loads((result.run_dir / "config.json").read_text())["class_embeddings"] == "glove"

    # independent: the returned head, every class's GloVe vectors, the stored validation tokens
    order = seen + [c for c in names if c in UNSEEN]  # seen then unseen, as the split keeps dataset order
    vectors = torch.from_numpy(class_embeddings(order, "glove").vectors)
    store = FeatureStore.open(setup[1] / "val")
    tokens = torch.from_numpy(store.read_rows(np.arange(store.num_images), tokens=True).astype(np.float32))
    head = result.model.head
    head.eval()
    with torch.no_grad():
        scores = torch.sigmoid(head(tokens, vectors)).numpy()
    assert head.num_classes == 9  # seen embeddings restored after the evaluation
    val = load_dataset("synthetic", root, "val").labels.to_dense()
    targets = val[:, [names.index(c) for c in order]]
    u = slice(9, 12)
    ap = [average_precision_score(targets[:, j], scores[:, j]) if targets[:, j].any() else 0.0 for j in range(12)]
    assert zs["zsl"]["map"] == pytest.approx(100 * np.mean(ap[9:]), abs=1e-3)
    assert zs["gzsl"]["map"] == pytest.approx(100 * np.mean(ap), abs=1e-3)
    assert zs["zsl"]["f1@3"] == pytest.approx(_reference_top_k_f1(scores[:, u], targets[:, u], 3), abs=1e-3)
    assert zs["gzsl"]["f1@5"] == pytest.approx(_reference_top_k_f1(scores, targets, 5), abs=1e-3)
    assert "f1@5" not in zs["zsl"]  # 3 unseen classes: no top-5
    keep = (targets[:, u] == 1).any(1)
    assert zs["images"] == {"zsl": 30, "gzsl": 30, "zsl_unseen_positive": int(keep.sum())}
    ap_keep = [average_precision_score(targets[keep, j], scores[keep, j]) for j in range(9, 12)
               if targets[keep, j].any()]
    assert zs["zsl_unseen_positive"]["map"] == pytest.approx(100 * np.mean(ap_keep), abs=1e-3)


def test_random_embeddings_are_a_seeded_control():
    from plbench.embeddings import class_embeddings

    a = class_embeddings(["red_striped_circle", "blue_solid_bar"], "random").vectors
    b = class_embeddings(["blue_solid_bar"], "random").vectors
    assert a.shape == (2, 50) and np.array_equal(a[1], b[0])  # a name's vector does not depend on the list
    assert abs(np.corrcoef(a)[0, 1]) < 0.5


@pytest.mark.parametrize("change, field", [
    ({"head": "gap"}, "--head"),
    ({"class_embeddings": None}, "--class-embeddings"),
    ({"zsl_split": None}, "--class-embeddings"),  # embeddings without a split
    ({"zsl_split": None, "class_embeddings": None, "missing_embeddings": "zero"}, "--class-embeddings"),
])
def test_bad_combinations_are_input_errors(setup, tmp_path, change, field):
    from plbench.engine.train import train

    with pytest.raises(InputError) as e:
        train(_config(setup, tmp_path, **change), progress=False)
    assert e.value.field == field
    assert not any(tmp_path.iterdir())  # nothing written


def test_runs_cache_encoder_embeddings(setup, tmp_path, monkeypatch):
    """A run caches its encoder's embeddings under <out_dir>/class-embeddings: a second run on the same class list
    and source reads them (the encoder is not called) and gets the same vectors; another prompt is another entry."""
    from plbench.embeddings import encoders
    from plbench.engine.train import train

    calls = []
    encode = encoders.encode_glove

    def spy(texts):
        calls.append(list(texts))
        return encode(texts)

    monkeypatch.setattr(encoders, "encode_glove", spy)
    first = train(_config(setup, tmp_path, epochs=1, run_name="a"), progress=False)
    assert [len(c) for c in calls] == [12]  # the split's classes, seen then unseen
    entries = sorted((tmp_path / "class-embeddings").glob("*.npy"))
    assert len(entries) == 1 and json.loads(entries[0].with_suffix(".json").read_text())["source"] == "glove"
    second = train(_config(setup, tmp_path, epochs=1, seed=2, run_name="b"), progress=False)
    assert len(calls) == 1  # read from the cache
    np.testing.assert_array_equal(second.model.head.query_embeddings.numpy(),
                                  first.model.head.query_embeddings.numpy())
    np.testing.assert_array_equal(np.load(entries[0])[:9], first.model.head.query_embeddings.numpy())
    train(_config(setup, tmp_path, epochs=1, run_name="c", prompt="a photo of a {}"), progress=False)
    assert len(calls) == 2 and len(list((tmp_path / "class-embeddings").glob("*.npy"))) == 2


def test_clip_architecture_of_a_run(setup, tmp_path):
    """--clip-model picks the open_clip architecture of a clip:FILE source (a tiny one with random weights here):
    recorded in config.json and the summary, its width is the queries'; a checkpoint of another architecture,
    or the option without a clip source, is refused before anything is written."""
    pytest.importorskip("open_clip", reason="extra clip not installed (pip install 'plbench[clip]')")
    from zero_shot_support import tiny_clip

    from plbench.embeddings import class_embeddings
    from plbench.engine.train import train

    weights = tiny_clip(tmp_path, "plbench-run-clip-24", embed_dim=24, seed=3)
    source = f"clip:{weights}"
    out = tmp_path / "runs"
    result = train(_config(setup, out, epochs=1, class_embeddings=source, clip_model="plbench-run-clip-24"),
                   progress=False)
    zs = result.summary["zero_shot"]
    assert zs["clip_model"] == "plbench-run-clip-24" and zs["embedding_dim"] == 24 and zs["embeddings"] == source
    assert json.loads((result.run_dir / "config.json").read_text())["clip_model"] == "plbench-run-clip-24"
    seen = result.summary["class_names"]
    np.testing.assert_allclose(result.model.head.query_embeddings.numpy(),
                               class_embeddings(seen, source, clip_model="plbench-run-clip-24").vectors, atol=1e-6)

    other = tiny_clip(tmp_path, "plbench-run-clip-16", embed_dim=16, seed=4)
    for change in ({"class_embeddings": f"clip:{other}", "clip_model": "plbench-run-clip-24"},
                   {"clip_model": "plbench-run-clip-24"}):  # the second with glove
        bad = tmp_path / "bad"
        with pytest.raises(InputError) as e:
            train(_config(setup, bad, epochs=1, **change), progress=False)
        assert e.value.field == "--clip-model" and not bad.exists()


def test_prompt_is_carried_through_a_run(setup, tmp_path):
    """--prompt reaches config.json, the summary and the head: the run's queries are the prompted names' GloVe
    vectors, which differ from the bare names' (the no-prompt run's)."""
    from plbench.embeddings import class_embeddings
    from plbench.engine.train import train

    prompt = "a photo of a {}"
    bare = train(_config(setup, tmp_path, epochs=1, run_name="bare"), progress=False)
    prompted = train(_config(setup, tmp_path, epochs=1, run_name="prompted", prompt=prompt), progress=False)
    assert json.loads((prompted.run_dir / "config.json").read_text())["prompt"] == prompt
    assert prompted.summary["zero_shot"]["prompt"] == prompt and bare.summary["zero_shot"]["prompt"] is None
    seen = prompted.summary["class_names"]
    got = prompted.model.head.query_embeddings.numpy()
    np.testing.assert_allclose(got, class_embeddings(seen, "glove", prompt=prompt).vectors, rtol=1e-6)
    np.testing.assert_allclose(bare.model.head.query_embeddings.numpy(), class_embeddings(seen, "glove").vectors,
                               rtol=1e-6)
    assert np.abs(got - bare.model.head.query_embeddings.numpy()).max(1).min() > 0.01  # every class differs
    assert prompted.summary["zero_shot"]["zsl"] != bare.summary["zero_shot"]["zsl"]


def test_partial_seen_labels_with_zero_shot_evaluation(setup, tmp_path):
    """An RPS simulation file (70% of the annotations hidden) with a zero-shot split: training reads the partial
    labels of the seen classes (images whose seen positives were all hidden are dropped, counted against the
    simulated matrix, not the full one), the loss mode applies to the hidden entries, and ZSL / GZSL are scored
    against the complete validation labels."""
    from plbench.artifacts.simulations import save_simulation
    from plbench.datasets import load_dataset
    from plbench.engine.train import train
    from plbench.simulate import simulate_rps

    root = setup[0]
    full = load_dataset("synthetic", root, "train")
    partial = simulate_rps(full.labels, 0.7, seed=4)
    sim = save_simulation(tmp_path / "rps.parquet", partial, dataset="synthetic", fingerprint=full.fingerprint,
                          scheme="rps", param=0.7, seed=4, extra={"split": "train", "dataset_options": {}})
    result = train(_config(setup, tmp_path / "runs", epochs=1, simulation=str(sim), mode="ignore"), progress=False)
    names = full.class_names
    seen_cols = [names.index(c) for c in names if c not in UNSEEN]
    simulated, complete = partial.to_dense()[:, seen_cols], full.labels.to_dense()[:, seen_cols]
    kept = int((simulated == 1).any(1).sum())
    assert kept < int((complete == 1).any(1).sum())  # the control: the hidden positives change who is kept
    s, zs = result.summary, result.summary["zero_shot"]
    assert s["train_images"] == kept and zs["dropped_train_images"] == len(simulated) - kept
    rows = (simulated == 1).any(1)
    assert s["train_annotated_fraction"] == pytest.approx(float((simulated[rows] != -1).mean()))
    assert s["mode"] == "ignore" and zs["images"]["gzsl"] == 30 and np.isfinite(zs["zsl"]["map"])


def test_missing_embeddings_is_a_closed_choice(setup, tmp_path):
    assert _config(setup, tmp_path).missing_embeddings == "error"  # the default
    with pytest.raises(InputError, match=r"missing_embeddings|error, zero") as e:
        _config(setup, tmp_path, missing_embeddings="skip")
    assert e.value.field == "missing_embeddings" and "error, zero" in e.value.problem


def test_row_subset_maps_rows_and_renumbers_items():
    from plbench.engine.zero_shot import RowSubset

    class Items(torch.utils.data.Dataset):
        def __len__(self):
            return 5

        def __getitem__(self, i):
            return None if i == 3 else (f"x{i}", f"y{i}", i)

    sub = RowSubset(Items(), np.array([4, 1, 3]))
    assert len(sub) == 3
    assert sub.__getitems__([0, 1, 2]) == [("x4", "y4", 0), ("x1", "y1", 1), None]
