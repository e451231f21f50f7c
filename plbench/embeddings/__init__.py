"""Class-name embeddings for zero-shot heads: one entry point, :func:`class_embeddings`.

Sources (the ``source`` string, CLI ``--class-embeddings``):

* ``glove``: GloVe 6B 50-d mean word vectors (extra ``glove``);
* ``minilm``: all-MiniLM-L6-v2 sentence embeddings, 384-d (extra ``minilm``);
* ``clip:<checkpoint file>``: an open_clip text tower (extra ``clip``; architecture ``clip_model``, CLI
  ``--clip-model``, default :data:`~plbench.embeddings.encoders.DEFAULT_CLIP_MODEL`);
* ``random``: a control: N(0, 1) 50-d vectors seeded by each name's text (no meaning shared between names);
* a file path: ML-Decoder's ``wordvec_array.pth``, the LESA / BiAM GloVe pickle, ``.npy``, ``.pt``,
  ``.csv`` (see :mod:`plbench.embeddings.files`).

A prompt template (``"a photo of a {}"``) turns each class name (``_`` read as a space) into the
text the encoder sees; it applies to encoders only. Results are cached per class list when a cache
folder is given (:mod:`plbench.embeddings.cache`).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np

from plbench.embeddings.cache import cache_key, read_cached, write_cached
from plbench.embeddings.encoders import DEFAULT_CLIP_MODEL
from plbench.embeddings.files import EmbeddingTable, read_embedding_file
from plbench.errors import InputError

ENCODERS = ("glove", "minilm", "random", "clip")
NAMED_ENCODERS = ("glove", "minilm", "random")  # sources without a file part
CLIP_PREFIX = "clip:"


@dataclass(frozen=True)
class ClassEmbeddings:
    """Embeddings of a class list, and what could not be embedded.

    Attributes:
        vectors: float32 (C, D), row i for ``class_names[i]``; zero rows for ``missing`` classes.
        class_names: the classes, in the order asked.
        source: the source string as given.
        prompt: the prompt template used (``None``: the bare names).
        missing: classes without a vector (not in the file; no known GloVe word).
        oov_words: GloVe only: class -> its out-of-vocabulary words (classes with any).
        cache_path: the cache entry read or written (``None`` without a cache folder).
    """

    vectors: np.ndarray
    class_names: tuple[str, ...]
    source: str
    prompt: str | None = None
    missing: tuple[str, ...] = ()
    oov_words: dict[str, tuple[str, ...]] = field(default_factory=dict)
    cache_path: Path | None = None

    @property
    def dim(self) -> int:
        return int(self.vectors.shape[1])

    def report(self) -> dict:
        """What to record in a run: source, prompt, shape, missing classes and OOV words."""
        return {"source": self.source, "prompt": self.prompt, "num_classes": len(self.class_names),
                "dim": self.dim, "missing": list(self.missing),
                "oov_words": {k: list(v) for k, v in self.oov_words.items()}}


def is_encoder(source: str) -> bool:
    """Whether ``source`` names an encoder (which embeds any text) rather than an embedding file."""
    return source in NAMED_ENCODERS or source.startswith(CLIP_PREFIX)


def prompt_texts(class_names: Sequence[str], prompt: str | None) -> list[str]:
    """The encoder input per class: the name with ``_`` as spaces, put into ``prompt`` when given.

    Raises:
        InputError: a prompt without exactly one ``{}``.
    """
    if prompt is not None and prompt.count("{}") != 1:
        raise InputError(None, "--prompt", f"expected a template with one {{}} for the class name, but got {prompt!r}",
                         'write e.g. "a photo of a {}"')
    names = [n.replace("_", " ") for n in class_names]
    return names if prompt is None else [prompt.format(n) for n in names]


def _source_identity(source: str, clip_model: str, file_classes: Sequence[str] | None) -> str:
    """What the cache key names for a source: content-bearing for files and checkpoints."""
    if source in NAMED_ENCODERS:
        return {"glove": "glove-6b-50d", "minilm": "all-minilm-l6-v2", "random": "random-sha256-50d"}[source]
    path = Path(source[len(CLIP_PREFIX):] if source.startswith(CLIP_PREFIX) else source).resolve()
    st = os.stat(path) if path.is_file() else None
    stamp = f"{path}:{st.st_size}:{st.st_mtime_ns}" if st else str(path)
    if source.startswith(CLIP_PREFIX):
        return f"clip:{clip_model}:{stamp}"
    return f"file:{stamp}:" + ("" if file_classes is None else cache_key(file_classes, "", None))


def _compute(class_names: list[str], source: str, prompt: str | None, file_classes: Sequence[str] | None,
             clip_model: str, device: str) -> tuple[np.ndarray, list[str], dict[str, tuple[str, ...]]]:
    from plbench.embeddings import encoders

    if source == "glove":
        vectors, oov = encoders.encode_glove(prompt_texts(class_names, prompt))
        missing = [n for n, v in zip(class_names, vectors) if not v.any()]
        return vectors, missing, {n: tuple(w) for n, w in zip(class_names, oov) if w}
    if source == "minilm":
        return encoders.encode_minilm(prompt_texts(class_names, prompt), device), [], {}
    if source == "random":
        return encoders.encode_random(prompt_texts(class_names, prompt)), [], {}
    if source.startswith(CLIP_PREFIX):
        texts = prompt_texts(class_names, prompt)
        return encoders.encode_clip(texts, source[len(CLIP_PREFIX):], clip_model, device), [], {}
    if prompt is not None:
        raise InputError(None, "--prompt", f"expected no prompt template for embeddings read from a file "
                         f"({source}), but got {prompt!r}", "drop --prompt, or use an encoder (glove, minilm, clip:FILE)")
    table: EmbeddingTable = read_embedding_file(source, file_classes)
    vectors, missing = table.lookup(class_names)
    return vectors, missing, {}


def class_embeddings(class_names: Sequence[str], source: str, *, prompt: str | None = None,
                     file_classes: Sequence[str] | None = None, clip_model: str = DEFAULT_CLIP_MODEL,
                     cache_dir: str | Path | None = None, allow_missing: bool = False,
                     device: str = "cpu") -> ClassEmbeddings:
    """Embed ``class_names`` from ``source`` (see the module docstring), in the given order.

    Args:
        class_names: (C,) names, unique.
        source: ``glove``, ``minilm``, ``clip:<checkpoint>`` or an embedding file.
        prompt: template with one ``{}`` (encoders only).
        file_classes: the class of each row of a file without names (see :mod:`plbench.embeddings.files`).
        clip_model: open_clip architecture of a ``clip:`` checkpoint.
        cache_dir: folder of cached entries; ``None`` computes without caching.
        allow_missing: return zero rows for classes without a vector instead of raising (a run's
            ``missing_embeddings = "zero"``, :class:`plbench.choices.MissingEmbeddings`).
        device: torch device for the MiniLM and CLIP encoders.
    Returns:
        :class:`ClassEmbeddings` with float32 (C, D) vectors.
    Raises:
        InputError: unknown source, missing package (names the pip extra), bad file, a prompt for a
            file source, or (unless ``allow_missing``) classes without a vector.
    """
    names = [str(n) for n in class_names]
    if len(set(names)) != len(names):
        raise ValueError("expected unique class names")
    encoder = is_encoder(source)
    if not encoder and not Path(source).is_file():
        raise InputError(Path(source), "--class-embeddings", f"expected an encoder ({', '.join(ENCODERS)}; clip as "
                         f"clip:FILE) or an embedding file, but got {source!r}, which is neither",
                         "name an encoder or an existing file")
    prompt_texts([], prompt)  # validate the template before any work
    key = cache_key(names, _source_identity(source, clip_model, file_classes), prompt)
    folder = Path(cache_dir) if cache_dir is not None else None
    hit = read_cached(folder, key, names) if folder is not None else None
    if hit is not None:
        vectors, meta = hit
        missing = list(meta.get("missing", []))
        oov = {k: tuple(v) for k, v in meta.get("oov_words", {}).items()}
        path: Path | None = folder / f"{key}.npy"
    else:
        vectors, missing, oov = _compute(names, source, prompt, file_classes, clip_model, device)
        path = None
    if missing and not allow_missing:  # before any write: a refused call leaves no cache entry
        raise InputError(Path(source) if not encoder else None, "--class-embeddings",
                         f"expected a vector for every class, but {len(missing)} of {len(names)} have none "
                         f"(first: {', '.join(missing[:5])})",
                         "use a source covering these classes, fix the class names, or give them zero vectors "
                         "(CLI --missing-embeddings zero; config missing_embeddings = \"zero\"; API allow_missing=True)")
    if hit is None and folder is not None:
        path = write_cached(folder, key, vectors, {"classes": names, "source": source, "prompt": prompt,
                                                   "missing": missing, "oov_words": {k: list(v) for k, v in oov.items()}})
    return ClassEmbeddings(np.ascontiguousarray(vectors, dtype=np.float32), tuple(names), source, prompt,
                           tuple(missing), oov, path)


__all__ = ["DEFAULT_CLIP_MODEL", "ClassEmbeddings", "EmbeddingTable", "class_embeddings", "is_encoder", "prompt_texts", "read_embedding_file"]
