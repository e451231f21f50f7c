"""The demo's zero-shot split rule and chance level (plbench.demo_zero_shot), by hand."""

from __future__ import annotations

import numpy as np
import pytest

from plbench.demo_zero_shot import chance_map, held_out_conjunctions


def test_held_out_classes_keep_every_attribute_seen():
    names = ["red_solid_circle", "blue_solid_square", "red_dotted_square", "blue_dotted_circle", "green_solid_star",
             "blue_dotted_square"]
    freq = [0.5, 0.4, 0.3, 0.2, 0.1, 0.05]
    # greedy by frequency, the most frequent kept seen: blue_solid_square (blue, solid, square remain),
    # red_dotted_square (red in the first, dotted and square in the last), blue_dotted_circle (blue and dotted in
    # the last, circle in the first); green_solid_star's green occurs nowhere else, and with the three held out
    # blue_dotted_square would leave blue unseen
    assert held_out_conjunctions(names, freq, 2) == ["blue_solid_square", "red_dotted_square"]
    assert held_out_conjunctions(names, freq, 3) == ["blue_solid_square", "red_dotted_square", "blue_dotted_circle"]
    with pytest.raises(ValueError, match="expected 4"):
        held_out_conjunctions(names, freq, 4)

def test_chance_map_is_the_mean_prevalence():
    t = np.array([[1, 0, 0], [1, 1, 0], [0, 0, 0], [1, 0, 0]], dtype=np.int8)
    assert chance_map(t) == pytest.approx(100 * (0.75 + 0.25 + 0.0) / 3)


def _block():
    from plbench.zsl.splits import ZSLSplit

    split = ZSLSplit(seen=("a_b_c", "d_e_f"), unseen=("a_e_c",), source="demo")
    maps = {("glove", 0): (30.0, 40.0, 50.0), ("glove", 1): (26.0, 38.0, 48.0),
            ("random", 0): (20.0, 41.0, 51.0), ("random", 1): (21.0, 36.0, 47.0)}
    summaries = {k: {"val_map": seen, "zero_shot": {"zsl": {"map": zsl}, "gzsl": {"map": gzsl}}}
                 for k, (zsl, gzsl, seen) in maps.items()}
    return {"split": split, "runs": [], "summaries": summaries, "tokens": 9,
            "chance": {"zsl": 17.0, "gzsl": 11.0, "seen": 9.0}}


def test_zero_shot_note_table_is_paired_by_seed():
    from plbench.demo_zero_shot import zero_shot_note

    note = zero_shot_note(_block())
    # ZSL: GloVe 30, 26 -> 28 ± 2.83; random 20, 21 -> 20.5 ± 0.71; paired 10, 5 -> 7.5 ± 3.54, both positive
    assert "| ZSL: the 1 unseen | 28.0 ± 2.8 | 20.5 ± 0.7 | 7.5 ± 3.5 | 2/2 | 17.0 |" in note
    # GZSL: 40 - 41 = -1, 38 - 36 = 2 -> 0.5 ± 2.12, one seed positive
    assert "| GZSL: all 3 | 39.0 ± 1.4 | 38.5 ± 3.5 | 0.5 ± 2.1 | 1/2 | 11.0 |" in note
    assert "| the 2 seen (trained on) | 49.0 ± 1.4 | 49.0 ± 2.8 | 0.0 ± 1.4 | 1/2 | 9.0 |" in note
    # 7.5 > 2 x 3.54 on every seed: the reading says GloVe transfers
    assert "GloVe beats random on every seed (+7.5 ± 3.5)" in note and "not separable" not in note


def test_the_background_block_raises_what_the_block_raises(tmp_path):
    """An output folder without the synthetic data: the child's exception reaches the parent unchanged."""
    from plbench.demo import DemoSettings
    from plbench.demo_zero_shot import BackgroundZeroShot, run_zero_shot_block

    base = DemoSettings(out=str(tmp_path), seeds=(0,))
    with pytest.raises(Exception) as direct:
        run_zero_shot_block(base, tmp_path / "a")
    lines = []
    with pytest.raises(type(direct.value)) as background:
        BackgroundZeroShot(base, tmp_path / "a").result(lines.append)
    assert str(background.value) == str(direct.value)
    from plbench.errors import InputError

    assert isinstance(background.value, InputError)  # rebuilt in the parent (its pickle does not round-trip)
