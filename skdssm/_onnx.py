"""The towers as ONNX graphs, and the description of the inputs a service encodes requests into.

:meth:`~skdssm.estimators.DSSMRecommender.export_onnx` calls :func:`export_towers`. Each tower is
exported with ``torch.onnx.export(..., dynamo=True)`` (``torch.export`` then onnxscript): the
TorchScript exporter cannot export ``embedding_bag`` with a padding index, which every
multi-valued feature and the retriever's history bag use.
"""

from __future__ import annotations

import contextlib
import copy
import json
import logging
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from torch import nn

from ._features import N_RESERVED, OFFSETS, OOV, PAD

FORMAT = "skdssm-towers/1"
TOWER_FILES = {"user": "user_tower.onnx", "item": "item_tower.onnx"}
VOCABULARY_FILE = "vocabularies.json"
OPSET = 18
# torch.export specialises dimensions of size 0 or 1: the example batch must be larger.
EXAMPLE_ROWS = 16
# ONNX files are protobufs, limited to 2 GiB: larger towers keep their weights in <file>.data.
MAX_EMBEDDED_BYTES = 2**31 - 2**27
# The exporter's own notes (skipped torchvision ops, constant folding it does not attempt).
EXPORTER_LOGGERS = ("torch.onnx", "onnxscript", "onnx_ir")


@contextlib.contextmanager
def _quiet_exporter():
    loggers = [logging.getLogger(name) for name in EXPORTER_LOGGERS]
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        logger.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            # torch.export's notes on its own internals (deprecations, tracing).
            warnings.simplefilter("ignore")
            yield
    finally:
        for logger, level in zip(loggers, levels):
            logger.setLevel(level)


def tower_keys(tower: nn.Module) -> set:
    """The input keys a tower (or an ensemble of towers) reads."""
    tower = tower.members[0] if hasattr(tower, "members") else tower
    names = [*tower.categorical_names, *tower.multi_names, *tower.sequence_names]
    return {f"{tower.side}:{name}" for name in names} | set(tower.dense_keys)


def consumed(inputs: dict, keys: set) -> dict:
    """The entries of ``inputs`` a tower reading ``keys`` consumes (a bag's offsets included)."""
    return {key: value for key, value in inputs.items()
            if key in keys or (key.endswith(OFFSETS) and key[: -len(OFFSETS)] in keys)}


class _NamedInputs(nn.Module):
    """A tower taking positional tensors (ONNX graphs have positional inputs) named ``names``."""

    def __init__(self, tower: nn.Module, names: list):
        super().__init__()
        self.tower = tower
        self.names = list(names)

    def forward(self, *tensors):
        return self.tower(dict(zip(self.names, tensors)))


def export_tower(tower: nn.Module, inputs: dict, path: Path, output_name: str) -> None:
    """Write ``tower`` as an ONNX graph whose inputs are the keys of ``inputs`` (axis 0 dynamic)."""
    try:
        import onnx  # noqa: F401
        import onnxscript  # noqa: F401
    except ImportError as error:
        raise ImportError(f"export_onnx needs onnx and onnxscript ({error}); install them with "
                          "pip install 'skdssm[onnx]'.") from error
    names = list(inputs)
    tower = copy.deepcopy(tower).cpu().float().eval()
    args = tuple(torch.from_numpy(np.ascontiguousarray(inputs[name])) for name in names)
    dynamic = tuple({0: torch.export.Dim.AUTO} for _ in names)
    n_bytes = sum(p.numel() * p.element_size() for p in tower.parameters())
    with _quiet_exporter():
        torch.onnx.export(_NamedInputs(tower, names), args, str(path), input_names=names,
                          output_names=[output_name], dynamic_shapes=(dynamic,), dynamo=True,
                          opset_version=OPSET, verbose=False,
                          external_data=n_bytes > MAX_EMBEDDED_BYTES)


def _values(vocabulary: pd.Index) -> list:
    """Vocabulary values as JSON-ready Python objects (numpy scalars unwrapped)."""
    return [value.item() if isinstance(value, np.generic) else value for value in vocabulary]


def feature_spec(feature, key: str, inputs: dict) -> dict:
    """What a service needs to build one tower input from raw values."""
    spec = {"name": key, "feature": feature.name, "kind": feature.kind,
            "columns": [str(c) for c in feature.columns],
            "dtype": str(inputs[key].dtype), "shape": ["batch", *inputs[key].shape[1:]]}
    if feature.vocabulary is not None:
        spec["vocabulary"] = _values(feature.vocabulary)
    if feature.kind in ("multi", "sequence"):
        spec["max_len"] = int(inputs[key].shape[1])
        spec["alignment"] = "right (most recent last)" if feature.kind == "sequence" else "left"
    return spec


def side_specs(encoder, side: str, inputs: dict) -> list:
    """Specs of the encoded feature inputs of one side that ``inputs`` holds."""
    specs = []
    dense = [f for f in encoder.side_features(side) if f.kind == "dense"]
    for feature in encoder.side_features(side):
        key = f"{side}:{feature.name}"
        if feature.kind != "dense" and key in inputs:
            specs.append(feature_spec(feature, key, inputs))
    if f"{side}:dense" in inputs:
        specs.append({"name": f"{side}:dense", "kind": "dense",
                      "columns": [str(f.columns[0]) for f in dense], "dtype": "float32",
                      "shape": ["batch", len(dense)]})
    return specs


def write_vocabularies(path: Path, sides: dict) -> None:
    """``sides``: side -> {"inputs": [...], "output": name, "embedding_dim": int, ...}."""
    document = {"format": FORMAT,
                "codes": {"padding": PAD, "out_of_vocabulary": OOV,
                          "first_known": N_RESERVED,
                          "rule": "the i-th vocabulary value (0-based) has code i + 2; values "
                                  "absent from the vocabulary get 1; padding is 0"},
                **sides}
    path.write_text(json.dumps(document, indent=1, default=str))


def example_rows(ids: np.ndarray) -> np.ndarray:
    """``EXAMPLE_ROWS`` ids cycled from ``ids`` (>= 2 rows, so the batch axis stays dynamic)."""
    return np.resize(np.asarray(ids), EXAMPLE_ROWS)
