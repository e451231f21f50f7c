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
