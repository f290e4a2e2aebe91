"""Read what fairseq's command-line tools print: scores, timings, hypotheses, training logs.

One parser for every tool of the project (compare, recipes, benchmark, quick-start, tests).
"""
import json
import os
import re
from dataclasses import dataclass
from typing import Dict, List, Optional, Tuple

_BLEU = re.compile(r"Generate \S+ with beam=\d+: BLEU4? = ([\d.]+)")
_SACREBLEU = re.compile(r"Generate \S+ with beam=\d+: BLEU = ([\d.]+)")
_ROUGE = re.compile(r"ROUGE-1 = ([\d.]+), ROUGE-2 = ([\d.]+), ROUGE-L = ([\d.]+)")
_TIMING = re.compile(r"Translated ([\d,]+) sentences \(([\d,]+) tokens\) in ([\d.]+)s")
_REFERENCE = re.compile(r"^T-(\d+)\t(.*)$", re.MULTILINE)
_LM_SCORE = re.compile(r"Loss \(base 2\): ([\d.]+), Perplexity: ([\d.]+)")
_PARAMS = re.compile(r"num\. (?:shared )?model params: ([\d,]+)")
_DONE = re.compile(r"done training in ([\d.]+) seconds")
# the line written before each fairseq-train session's output in a log that resumed runs append to
SESSION_HEADER = "$ fairseq-train"
_JSON_RECORD = re.compile(r"\| (train_inner|train|valid) \| (\{.*\})\s*$")


# --- fairseq-generate / fairseq-eval-lm ------------------------------------------------------
@dataclass
class GenerationResult:
    bleu: Optional[float]
    sentences: int
    tokens: int
    seconds: float
    hypotheses: Dict[int, str]
    output: str

    @property
    def sentences_per_second(self) -> float:
        return self.sentences / self.seconds if self.seconds > 0 else float("inf")


def parse_generation(output: str) -> GenerationResult:
    """Read BLEU, timing and the detokenized hypotheses (``D-`` lines) of fairseq-generate."""
    bleu = _BLEU.search(output) or _SACREBLEU.search(output)
    timing = _TIMING.search(output)
    hypotheses = {}
    for line in output.splitlines():
        if line.startswith("D-"):
            ident, _score, text = (line.split("\t") + ["", ""])[:3]
            hypotheses.setdefault(int(ident[2:]), text)
    return GenerationResult(
        bleu=float(bleu.group(1)) if bleu else None,
        sentences=int(timing.group(1).replace(",", "")) if timing else len(hypotheses),
        tokens=int(timing.group(2).replace(",", "")) if timing else 0,
        seconds=float(timing.group(3)) if timing else 0.0,
        hypotheses=hypotheses,
        output=output,
    )


def length_ratio(result: GenerationResult) -> Optional[float]:
    """Words of the detokenized hypotheses (``D-`` lines) over words of the references
    (``T-`` lines) of a fairseq-generate run."""
    references: Dict[int, str] = {}
    for ident, text in _REFERENCE.findall(result.output):
        references.setdefault(int(ident), text)
    reference_words = sum(len(text.split()) for text in references.values())
    hypothesis_words = sum(len(text.split()) for text in result.hypotheses.values())
    return hypothesis_words / reference_words if reference_words else None


def rouge_scores(output: str) -> Optional[Dict[str, float]]:
    """ROUGE-1/2/L of a ``fairseq-generate --scoring rouge`` run (None: no ROUGE line)."""
    match = _ROUGE.search(output)
    if match is None:
        return None
    return {"rouge1": float(match.group(1)), "rouge2": float(match.group(2)),
            "rougeL": float(match.group(3))}


def lm_scores(output: str) -> Optional[Dict[str, float]]:
    """Loss (base 2) and perplexity of a ``fairseq-eval-lm`` run (None: no score line)."""
    match = _LM_SCORE.search(output)
    if match is None:
        return None
    return {"loss_base2": float(match.group(1)), "perplexity": float(match.group(2))}


def result_line(output: str) -> str:
    """The score line of fairseq-generate (``Generate ...``) or fairseq-eval-lm (``Loss ...``)."""
    for line in reversed(output.splitlines()):
        if line.startswith("Generate "):
            return line
        if "Loss (base 2):" in line and "Perplexity:" in line:
            return line[line.index("Loss (base 2):"):]
    raise ValueError("no score line in the output:\n" + "\n".join(output.splitlines()[-20:]))


# --- fairseq-train's log ---------------------------------------------------------------------
def model_parameters(log_text: str) -> Optional[int]:
    """The model's parameter count as fairseq-train logs it (the last run's, for a resumed log)."""
    params = _PARAMS.findall(log_text)
    return int(params[-1].replace(",", "")) if params else None


def json_record(line: str) -> Optional[Tuple[str, Dict]]:
    """``(kind, record)`` of a fairseq-train JSON log line (``train_inner``, ``train``,
    ``valid``); None for any other line."""
    match = _JSON_RECORD.search(line)
    if not match:
        return None
    try:
        return match.group(1), json.loads(match.group(2))
    except json.JSONDecodeError:
        return None


def read_records(log_path: str) -> Dict[str, List[Dict]]:
    """fairseq-train's JSON log records (``train_inner``, ``train``, ``valid``), in order.

    A resumed run repeats the updates after its last checkpoint: for each update only the
    record written last is kept.
    """
    records: Dict[str, Dict[int, Dict]] = {"train_inner": {}, "train": {}, "valid": {}}
    if not os.path.isfile(log_path):
        return {kind: [] for kind in records}
    with open(log_path, encoding="utf-8", errors="replace") as f:
        for line in f:
            parsed = json_record(line)
            if parsed is None:
                continue
            kind, record = parsed
            updates = record.get("num_updates", record.get(f"{kind}_num_updates"))
            if updates is None:
                continue
            record = {k.replace("valid_", "", 1) if kind == "valid" else k: v
                      for k, v in record.items()}
            records[kind][int(float(updates))] = {k: _number(v) for k, v in record.items()}
    return {kind: [by_update[u] for u in sorted(by_update)] for kind, by_update in records.items()}


def sessions(log_text: str) -> List[str]:
    """The fairseq-train sessions of a log, each from its ``SESSION_HEADER`` line on."""
    return log_text.split(SESSION_HEADER)[1:]


def finished(session: str) -> bool:
    """Whether a fairseq-train session reached its end ("done training in ...")."""
    return _DONE.search(session) is not None


def training_wall_seconds(log_text: str) -> float:
    """Training time summed over the fairseq-train sessions of a log (a resumed run starts a new
    session): fairseq's "done training in" for a finished session, else its wall clock at the
    last record before it was stopped."""
    total = 0.0
    for session in sessions(log_text):
        done = _DONE.search(session)
        if done:
            total += float(done.group(1))
            continue
        records = filter(None, map(json_record, session.splitlines()))
        walls = [float(record["wall"]) for _kind, record in records if "wall" in record]
        total += max(walls, default=0.0)
    return total


def _number(value):
    try:
        return float(value)
    except (TypeError, ValueError):
        return value
