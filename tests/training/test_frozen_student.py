"""The frozen recipe's student heads: the hidden-layer head learns, reads raw features, and ships in a DetectorNet."""

from dataclasses import dataclass

import numpy as np
import torch
from sklearn.metrics import roc_auc_score

from detector.config import ModelConfig
from detector.model import DetectorNet
from training.frozen_student import fit_mlp_student, fit_student, head_scores


@dataclass
class _Sample:
    label: int
    family: str


@dataclass
class _Item:
    sample: _Sample


def _data(n: int = 400, d: int = 24, seed: int = 0) -> tuple[np.ndarray, list[_Item]]:
    """Features far from standardised (offset 50, scale 10) whose label is an XOR of two directions:
    no Linear head can separate it, a hidden layer can."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 2, d)).astype(np.float32)
    y = ((x[:, 0, 0] > 0) ^ (x[:, 0, 1] > 0)).astype(int)
    x[:, 1, :2] = x[:, 0, :2]  # both views carry the label
    items = [_Item(_Sample(int(label), "flux" if label else "real")) for label in y]
    return x * 10 + 50, items


def test_hidden_head_separates_what_a_linear_head_cannot_on_raw_features() -> None:
    x, items = _data()
    y = np.array([i.sample.label for i in items])
    mlp = fit_mlp_student(x, items, None, 0.0, 1e-2, ["flux"], hidden=32, epochs=400)
    linear = fit_student(x, items, None, 0.0, 1e-3, ["flux"])
    mlp_auc = roc_auc_score(y, head_scores(mlp, x).mean(axis=1))
    linear_auc = roc_auc_score(y, head_scores(linear, x).mean(axis=1))
    assert mlp_auc > 0.95 > 0.7 > linear_auc


def test_hidden_head_loads_into_the_shipped_network() -> None:
    net = DetectorNet(ModelConfig(pooling="multiscale", families=("flux",), head_hidden=16)).eval()
    x, items = _data(d=net.feature_dim, n=64)
    head = fit_mlp_student(x, items, None, 0.5, 1e-2, ["flux"], hidden=16, epochs=2)
    assert not isinstance(net.head, torch.nn.Linear)
    net.head.load_state_dict(head.state_dict())
    features = torch.from_numpy(x[:, 0])
    with torch.no_grad():
        assert torch.allclose(net.head(features), head(features))
