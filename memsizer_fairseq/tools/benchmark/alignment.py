"""``python -m memsizer_fairseq.tools.benchmark.alignment``: how well attention weights align words.

Trains a Transformer, a Memsizer model (the paper's setting) and Memsizer with softmax
cross-attention on the built-in toy translation task (:mod:`..toolkit.toy_data`:
word by word, adjectives moved after their noun, so every target word has one known source
word), with the same flags and batches. Each model then scores the test references with
``fairseq-generate --score-reference --print-alignment hard`` (the last decoder layer's
cross-attention weights, averaged over heads, as fairseq extracts them) and beam-searches them
with ``--print-alignment hard`` (both in this process: :mod:`..toolkit.generation`). Reported
per model: the share of target words whose aligned source word is the true one (references;
and hypotheses equal to their reference), and the beam search's sacreBLEU. Memsizer's weights
are the implicit ones of its read, ``w_tj = n^(-1/2) a(z_t) . l_j``.
"""
import json
import os
from typing import Dict, List, Optional, Sequence

from ..toolkit import fairseq_cli, generation
from . import arguments
from ..toolkit.toy_data import read_alignments, write_toy_translation

MODELS = {
    "transformer": ["--arch", "transformer_tiny"],
    "memsizer": ["--arch", "memsizer_transformer_tiny"],
    "memsizer-softmax-cross": ["--arch", "memsizer_transformer_tiny",
                               "--cross-attention", "softmax"],
}
SHARED = [
    "--encoder-embed-dim", "64", "--decoder-embed-dim", "64", "--encoder-ffn-embed-dim", "128",
    "--decoder-ffn-embed-dim", "128", "--share-all-embeddings",
    "--optimizer", "adam", "--adam-betas", "(0.9, 0.98)", "--lr", "3e-3",
    "--lr-scheduler", "inverse_sqrt", "--warmup-updates", "60",
    "--criterion", "label_smoothed_cross_entropy", "--label-smoothing", "0.1",
    "--dropout", "0.1", "--max-tokens", "2048", "--seed", "3", "--cpu", "--num-workers", "0",
    "--no-epoch-checkpoints", "--log-format", "simple", "--log-interval", "50",
]
SIZES = {"train": 4000, "valid": 100, "test": 200}


def accuracy(found: Dict[int, set], truth: List[set], samples: Optional[Sequence[int]] = None):
    """Share of the true links found (each target word has exactly one true source word)."""
    samples = sorted(found) if samples is None else samples
    total = sum(len(truth[i]) for i in samples)
    hits = sum(len(found[i] & truth[i]) for i in samples)
    return hits / total if total else None


def measure(work_dir: str, updates: int = 350, seed: int = 5) -> List[Dict]:
    prefixes = write_toy_translation(os.path.join(work_dir, "raw"), SIZES, seed=seed)
    data = os.path.join(work_dir, "bin")
    if not os.path.exists(os.path.join(data, "dict.src.txt")):
        fairseq_cli.preprocess(data, prefixes["train"], prefixes["valid"], prefixes["test"])
    truth = read_alignments(prefixes["test"] + ".align")
    rows = []
    for name, flags in MODELS.items():
        save_dir = os.path.join(work_dir, name)
        fairseq_cli.run_fairseq("train", [data, "--user-dir", fairseq_cli.USER_DIR, *flags, *SHARED,
                                       "--max-update", updates, "--save-dir", save_dir],
                             os.path.join(work_dir, f"train.{name}.log"))
        args = [data, "--user-dir", fairseq_cli.USER_DIR, "--path",
                os.path.join(save_dir, "checkpoint_last.pt"), "--beam", "4", "--batch-size", "64",
                "--cpu", "--print-alignment", "hard"]
        scored, searched = (
            generation.generate(args + extra, os.path.join(work_dir, f"{kind}.{name}.log"))
            for kind, extra in (("score", ["--score-reference"]), ("search", [])))
        equal = [i for i, text in searched.hypotheses.items() if text == searched.references[i]]
        rows.append({
            "model": name,
            "reference_alignment_accuracy": accuracy(scored.alignments, truth),
            "hypothesis_alignment_accuracy": accuracy(searched.alignments, truth, equal),
            "hypotheses_equal_to_reference": len(equal),
            "bleu": generation.bleu(searched)["sacrebleu"],
        })
    return rows


def render(rows: List[Dict], sentences: int) -> str:
    lines = ["| model | aligned to the true source word (references) | (hypotheses = reference) "
             "| BLEU |", "|---|---|---|---|"]
    for row in rows:
        lines.append(
            f"| {row['model']} | {100 * row['reference_alignment_accuracy']:.1f}% | "
            f"{100 * row['hypothesis_alignment_accuracy']:.1f}% "
            f"({row['hypotheses_equal_to_reference']} of {sentences}) | {row['bleu']:.2f} |")
    return "\n".join(lines)


def main(argv: Optional[Sequence[str]] = None):
    parser = arguments.ArgumentParser(prog="python -m memsizer_fairseq.tools.benchmark.alignment",
                                     description=__doc__.split("\n")[0])
    parser.add_argument("--work-dir", default="alignment-work",
                        help="folder for the data, checkpoints and logs (created)")
    parser.add_argument("--updates", type=arguments.positive_int, default=350,
                        help="training updates per model")
    parser.add_argument("--json", default=None, help="also write the rows here")
    args = parser.parse_args(argv)
    arguments.check_output(parser, "--work-dir", args.work_dir, folder=True)
    if args.json:
        arguments.check_output(parser, "--json", args.json)
    rows = measure(args.work_dir, args.updates)
    print(render(rows, SIZES["test"]))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(rows, f, indent=2)


if __name__ == "__main__":
    main()
