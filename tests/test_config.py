import json

import pytest

from plbench.config import TrainConfig
from plbench.errors import InputError


def test_round_trip(tmp_path):
    cfg = TrainConfig(dataset="coco", epochs=3, loss_options={"gamma_neg": 4.0})
    path = tmp_path / "config.json"
    path.write_text(json.dumps(cfg.to_dict()))
    assert TrainConfig.load(path) == cfg


def test_unknown_key_is_named(tmp_path):
    path = tmp_path / "config.json"
    path.write_text(json.dumps({"epochz": 3}))
    with pytest.raises(InputError) as e:
        TrainConfig.load(path)
    assert "epochz" in str(e.value) and str(path) in str(e.value)
