"""fairseq models built through fairseq's own registries and argument parsing; fairseq's tools
run in-process or as subprocesses on a tiny translation model (the end-to-end, resume and
reliability tests)."""
import contextlib
import importlib
import io
import logging
import os
import re
import sys
from dataclasses import dataclass
from typing import Dict, Optional

import torch
from fairseq import options, tasks
from fairseq.dataclass.utils import convert_namespace_to_omegaconf

from memsizer_fairseq.tools.toolkit.fairseq_cli import USER_DIR, run_fairseq
from memsizer_fairseq.tools.toolkit.toy_data import write_toy_translation

# The toy translation models shared by the end-to-end tests (trained once per session in
# conftest.py).
TOY_MODEL = [
    "--arch", "memsizer_transformer_tiny", "--encoder-embed-dim", "64",
    "--decoder-embed-dim", "64", "--encoder-ffn-embed-dim", "128",
    "--decoder-ffn-embed-dim", "128", "--share-all-embeddings",
]
TOY_TRAIN = [
    "--optimizer", "adam", "--adam-betas", "(0.9, 0.98)", "--lr", "3e-3",
    "--lr-scheduler", "inverse_sqrt", "--warmup-updates", "60",
    "--criterion", "label_smoothed_cross_entropy", "--label-smoothing", "0.1",
    "--dropout", "0.1", "--max-tokens", "2048", "--seed", "3", "--cpu", "--num-workers", "0",
    "--no-epoch-checkpoints", "--log-format", "simple", "--log-interval", "50",
]

SYMBOLS = [f"w{i}" for i in range(20)]


def write_dicts(data_dir, langs=("src", "tgt"), symbols=SYMBOLS):
    os.makedirs(data_dir, exist_ok=True)
    for lang in langs:
        with open(os.path.join(data_dir, f"dict.{lang}.txt"), "w") as f:
            for i, sym in enumerate(symbols):
                f.write(f"{sym} {1000 - i}\n")
    return data_dir


def parse_translation_args(data_dir, arch, extra=()):
    parser = options.get_training_parser()
    return options.parse_args_and_arch(
        parser,
        [data_dir, "--user-dir", USER_DIR, "--task", "translation", "--source-lang", "src",
         "--target-lang", "tgt", "--arch", arch, *extra],
    )


def build_translation_model(data_dir, arch, extra=()):
    args = parse_translation_args(data_dir, arch, extra)
    cfg = convert_namespace_to_omegaconf(args)
    task = tasks.setup_task(cfg.task)
    model = task.build_model(cfg.model)
    return model, task, args, cfg


@contextlib.contextmanager
def fairseq_log():
    """fairseq's log lines (INFO and up; what a command prints on stderr) of what runs in the
    block, as text."""
    root, stream = logging.getLogger(), io.StringIO()
    handler, level = logging.StreamHandler(stream), root.level
    root.addHandler(handler)
    root.setLevel(logging.INFO)
    try:
        yield stream
    finally:
        root.removeHandler(handler)
        root.setLevel(level)


def _captured_logs(enabled: bool):
    """:func:`fairseq_log` when enabled; otherwise an empty buffer."""
    return fairseq_log() if enabled else contextlib.nullcontext(io.StringIO())


def run_in_process(tool: str, args, stdin: str = None, logs: bool = False) -> str:
    """fairseq-generate / -interactive in this process (no interpreter start-up): their
    standard output, then (``logs``) their log lines. Errors propagate as exceptions."""
    from fairseq_cli import generate, interactive

    parser = options.get_generation_parser(interactive=tool == "interactive")
    # no DataLoader worker: fairseq keeps it alive between epochs, and releasing it in this
    # process waits out PyTorch's 5 s status interval (the command's exit kills it at once)
    parsed = options.parse_args_and_arch(parser, ["--num-workers", "0", *map(str, args)])
    main = {"generate": generate.main, "interactive": interactive.cli_main_args
            if hasattr(interactive, "cli_main_args") else interactive.main}[tool]
    out, previous_stdin = io.StringIO(), sys.stdin
    try:
        if stdin is not None:
            sys.stdin = io.StringIO(stdin)
        with contextlib.redirect_stdout(out), _captured_logs(logs) as log:
            main(convert_namespace_to_omegaconf(parsed))
    finally:
        sys.stdin = previous_stdin
    return out.getvalue() + log.getvalue()


# Child processes: one OpenMP thread (two threads slow torch down 50x on a busy 2-core machine).
ENV = {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}

TINY_MT = [
    "--arch", "memsizer_transformer_tiny", "--encoder-embed-dim", "32",
    "--decoder-embed-dim", "32", "--encoder-ffn-embed-dim", "64", "--decoder-ffn-embed-dim", "64",
    "--encoder-layers", "1", "--decoder-layers", "1", "--encoder-attention-heads", "2",
    "--decoder-attention-heads", "2", "--share-all-embeddings",
]

TINY_TRAIN = [
    "--optimizer", "adam", "--lr", "1e-3", "--criterion", "label_smoothed_cross_entropy",
    "--label-smoothing", "0.1", "--max-tokens", "300", "--seed", "3", "--cpu",
    "--num-workers", "0", "--log-format", "simple", "--log-interval", "1",
]


def child_env(extra=None):
    env = dict(os.environ, **ENV, **(extra or {}))
    env.pop("TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD", None)
    return env


def run_cli_in_process(tool, argv, logs=False):
    """``fairseq-<tool> ARGV`` in this process (its ``cli_main``); returns what it printed,
    then (``logs``) its log lines."""
    module = importlib.import_module(f"fairseq_cli.{tool.replace('-', '_')}")
    # the evaluation tools load their batches in this process (see run_in_process)
    workers = ["--num-workers", "0"] if tool in ("generate", "interactive", "validate",
                                                 "eval-lm") else []
    saved, sys.argv = sys.argv, [f"fairseq-{tool}", *workers, *map(str, argv)]
    out = io.StringIO()
    try:
        with contextlib.redirect_stdout(out), _captured_logs(logs) as log:
            module.cli_main()
    finally:
        sys.argv = saved
    return out.getvalue() + log.getvalue()


def write_translation_data(root, sizes=None, edit=None):
    """Toy translation corpus, binarised in-process; ``edit(split, src, tgt)`` may alter lines."""
    sizes = sizes or {"train": 400, "valid": 40, "test": 40}
    prefixes = write_toy_translation(os.path.join(root, "raw"), sizes, seed=5)
    if edit is not None:
        for split, prefix in prefixes.items():
            src = open(prefix + ".src").read().splitlines()
            tgt = open(prefix + ".tgt").read().splitlines()
            edit(split, src, tgt)
            for lang, lines in (("src", src), ("tgt", tgt)):
                with open(f"{prefix}.{lang}", "w") as f:
                    f.write("\n".join(lines) + "\n")
    data = os.path.join(root, "bin")
    run_cli_in_process("preprocess", [
        "--source-lang", "src", "--target-lang", "tgt", "--trainpref", prefixes["train"],
        "--validpref", prefixes["valid"], "--testpref", prefixes["test"], "--destdir", data,
        "--joined-dictionary", "--workers", "1",
    ])
    return data


def train_args(data, save_dir, *extra):
    return [data, "--user-dir", USER_DIR, *TINY_MT, *TINY_TRAIN, "--save-dir", save_dir, *extra]


def train_subprocess(args, env=None):
    """fairseq-train ARGS in a process of its own, as the tools start it; its output."""
    return run_fairseq("train", args, env=dict(ENV, TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD=None,
                                               **(env or {})))


def load_params(path):
    return torch.load(path, map_location="cpu")["model"]  # the safe loader


def max_param_diff(a, b):
    assert a.keys() == b.keys()
    return max((a[k].double() - b[k].double()).abs().max().item() for k in a)


def loaded_updates(log):
    found = re.findall(r"Loaded checkpoint \S+ \(epoch \d+ @ (\d+) updates\)", log)
    return int(found[-1]) if found else None


@dataclass
class GenerationResult:
    """What the fairseq-generate command printed: its score line's BLEU, its timing, its D- lines
    (the tools generate in-process: memsizer_fairseq.tools.toolkit.generation)."""

    bleu: Optional[float]
    sentences: int
    tokens: int
    seconds: float
    hypotheses: Dict[int, str]
    output: str


_BLEU = re.compile(r"Generate \S+ with beam=\d+: BLEU4? = ([\d.]+)")
_TIMING = re.compile(r"Translated ([\d,]+) sentences \(([\d,]+) tokens\) in ([\d.]+)s")


def printed_generation(output: str) -> GenerationResult:
    """What fairseq-generate printed (``output``), read back."""
    bleu, timing = _BLEU.search(output), _TIMING.search(output)
    hypotheses = {}
    for line in output.splitlines():
        if line.startswith("D-"):
            ident, _score, text = (line.split("\t") + ["", ""])[:3]
            hypotheses.setdefault(int(ident[2:]), text)
    number = lambda text: int(text.replace(",", ""))  # noqa: E731
    return GenerationResult(
        bleu=float(bleu.group(1)) if bleu else None,
        sentences=number(timing.group(1)) if timing else len(hypotheses),
        tokens=number(timing.group(2)) if timing else 0,
        seconds=float(timing.group(3)) if timing else 0.0, hypotheses=hypotheses, output=output)


def generate_command(data, checkpoint, beam=4, batch_size=64, subset="test", extra=(),
                     log_path=None, in_process=False) -> GenerationResult:
    """The ``fairseq-generate`` command a user types (a subprocess, or its ``main`` in this
    process), its console output read back."""
    args = [data, "--user-dir", USER_DIR, "--path", checkpoint, "--gen-subset", subset,
            "--beam", beam, "--batch-size", batch_size, *extra]
    if in_process:
        return printed_generation(run_in_process("generate", args))
    return printed_generation(run_fairseq("generate", args, log_path))


def hard_alignments(output: str) -> Dict[int, set]:
    """``A-`` lines of fairseq-generate's output: sample id -> {(source word, target word)}."""
    found = {}
    for line in output.splitlines():
        if line.startswith("A-"):
            sample, _, links = line.partition("\t")
            found[int(sample[2:])] = {tuple(map(int, link.split("-"))) for link in links.split()}
    return found
