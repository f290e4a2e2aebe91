"""What a fairseq-train run leaves behind, read as data: its ``--log-format json`` records and
its checkpoint's training state.

fairseq-train logs each record as ``TIME | LEVEL | KIND | {json}`` (``KIND``: ``train_inner``,
``train``, ``valid``); its checkpoints keep the updates done (``optimizer_history``) and the
training time summed over every session of a resumed run (``extra_state``).
"""
import json
import os
from typing import Dict, List, Optional, Tuple

KINDS = ("train_inner", "train", "valid")


def json_record(line: str) -> Optional[Tuple[str, Dict]]:
    """``(kind, record)`` of a fairseq-train JSON log line; None for any other line. The valid
    record's ``valid_`` prefixes are dropped and its numbers made floats."""
    parts = line.rstrip("\n").split(" | ", 3)
    if len(parts) != 4 or parts[2] not in KINDS or not parts[3].startswith("{"):
        return None
    try:
        record = json.loads(parts[3])
    except json.JSONDecodeError:
        return None
    kind = parts[2]
    return kind, {(k[len("valid_"):] if kind == "valid" and k.startswith("valid_") else k):
                  _number(v) for k, v in record.items()}


def read_records(log_path: str) -> Dict[str, List[Dict]]:
    """A log's records by kind, in update order; a resumed run repeats the updates after its
    last checkpoint: for each update the record written last is kept."""
    records: Dict[str, Dict[int, Dict]] = {kind: {} for kind in KINDS}
    if os.path.isfile(log_path):
        with open(log_path, encoding="utf-8", errors="replace") as f:
            for parsed in map(json_record, f):
                if parsed and "num_updates" in parsed[1]:
                    records[parsed[0]][int(parsed[1]["num_updates"])] = parsed[1]
    return {kind: [by_update[u] for u in sorted(by_update)] for kind, by_update in records.items()}


def training_state(checkpoint: str) -> Optional[Dict]:
    """``updates`` and ``wall_seconds`` (every session's training time) saved in a fairseq
    checkpoint; None when there is no checkpoint."""
    if not os.path.isfile(checkpoint):
        return None
    import torch

    from . import plugin  # noqa: F401  (the plugin's safe loading of fairseq checkpoints)

    state = torch.load(checkpoint, map_location="cpu", weights_only=True, mmap=True)
    return {"updates": int(state["optimizer_history"][-1]["num_updates"]),
            "wall_seconds": round(float(state["extra_state"]["previous_training_time"]), 1)}


def _number(value):
    try:
        return float(value)
    except (TypeError, ValueError):
        return value
