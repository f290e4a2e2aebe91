"""Quick-start: train Memsizer and a same-size Transformer on a built-in toy translation task.

Builds a synthetic corpus (no download), binarizes it with fairseq-preprocess, trains
``memsizer_transformer`` and fairseq's ``transformer`` of the same size with fairseq-train (same
updates, same seed; side by side, one thread each, a progress bar each), translates the test set
with fairseq's beam search (beam 4; after an untimed pass over the validation set) and prints
BLEU and decoding time side by side. Then it shows what Memsizer is for: each model decodes test
sentences token by token up to 256 output tokens, and the time of a decoder step and the decoding
state per sentence are printed (and plotted to ``decoding.png``) against the output length: the
Transformer's grow with it, Memsizer's stay flat. A few minutes on 2 CPU cores.
"""
import argparse
import logging
import os
import shutil
import sys
import warnings

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, ROOT)

from memsizer_fairseq.tools.compare.state_size import decoding_profile  # noqa: E402
from memsizer_fairseq.tools.compare.training import TrainingRun, train_side_by_side  # noqa: E402
from memsizer_fairseq.tools.tasks import SPLITS, TRANSLATION, Layout  # noqa: E402
from memsizer_fairseq.tools.toolkit import fairseq_cli, generation  # noqa: E402

MODEL_SIZE = [
    "--encoder-layers", "2", "--decoder-layers", "2",
    "--encoder-embed-dim", "64", "--decoder-embed-dim", "64",
    "--encoder-ffn-embed-dim", "128", "--decoder-ffn-embed-dim", "128",
    "--encoder-attention-heads", "4", "--decoder-attention-heads", "4",
    "--share-all-embeddings",
]
SIZE_NAME = "2+2 layers, d=64"


def train_args(data, save_dir, arch, updates, seed):
    return [
        data, "--user-dir", fairseq_cli.USER_DIR, "--arch", arch, *MODEL_SIZE,
        "--optimizer", "adam", "--adam-betas", "(0.9, 0.98)", "--lr", "3e-3",
        "--lr-scheduler", "inverse_sqrt", "--warmup-updates", "60", "--clip-norm", "1.0",
        "--criterion", "label_smoothed_cross_entropy", "--label-smoothing", "0.1",
        "--dropout", "0.1", "--max-tokens", "1024", "--max-update", str(updates),
        "--seed", str(seed), "--save-dir", save_dir, "--no-epoch-checkpoints",
        "--log-format", "json", "--log-interval", "10", "--num-workers", "0", "--cpu",
    ]


PROFILE_LENGTHS = (16, 32, 64, 128, 256)  # output tokens at which decoding is profiled
PROFILE_SENTENCES = 8


def at_least(minimum: int):
    def parse(value: str) -> int:
        try:
            number = int(value)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected an integer, got {value!r}")
        if number < minimum:
            raise argparse.ArgumentTypeError(f"expected at least {minimum}, got {number}")
        return number
    return parse


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workdir", default=os.path.join(ROOT, "runs", "quickstart"))
    parser.add_argument("--updates", type=at_least(1), default=400,
                        help="training updates per model")
    parser.add_argument("--train-size", type=at_least(100), default=2000)
    parser.add_argument("--test-size", type=at_least(PROFILE_SENTENCES), default=1000)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args(argv)
    workdir = os.path.abspath(args.workdir)
    existing = workdir
    while not os.path.exists(existing):
        existing = os.path.dirname(existing)
    if not os.path.isdir(existing) or not os.access(existing, os.W_OK):
        parser.error(f"--workdir {args.workdir}: {existing} is not a writable folder")
    return args


def profile_table(profiles):
    """Decoder step time and state per sentence against the output length, side by side."""
    t, m = profiles["transformer"], profiles["memsizer_transformer"]
    lines = ["| output tokens | step, Transformer (ms) | step, Memsizer (ms) | ratio "
             "| state, Transformer (KiB) | state, Memsizer (KiB) |", "|---|---|---|---|---|---|"]
    for a, b in zip(t, m):
        lines.append(
            f"| {a['output_tokens']} | {a['step_seconds'] * 1e3:.2f} | "
            f"{b['step_seconds'] * 1e3:.2f} | {a['step_seconds'] / b['step_seconds']:.2f}x | "
            f"{a['state_bytes_per_sentence'] / 1024:.1f} | "
            f"{b['state_bytes_per_sentence'] / 1024:.1f} |")
    return "\n".join(lines)


def plot_profiles(profiles, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (time_axis, state_axis) = plt.subplots(1, 2, figsize=(10, 4))
    for arch, label in (("transformer", "Transformer"), ("memsizer_transformer", "Memsizer")):
        lengths = [row["output_tokens"] for row in profiles[arch]]
        time_axis.plot(lengths, [row["step_seconds"] * 1e3 for row in profiles[arch]], "o-",
                       label=label)
        state_axis.plot(lengths, [row["state_bytes_per_sentence"] / 1024
                                  for row in profiles[arch]], "o-", label=label)
    for axis, ylabel in ((time_axis, "decoder step (ms)"),
                         (state_axis, "state per sentence (KiB)")):
        axis.set_xscale("log", base=2)
        axis.set_xlabel("output tokens")
        axis.set_ylabel(ylabel)
        axis.set_ylim(bottom=0)
        axis.legend()
    fig.suptitle(f"Greedy decoding of {PROFILE_SENTENCES} test sentences, CPU")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def main(argv=None):
    args = parse_args(argv)
    # fairseq's commands configure the root logger at INFO when imported; those run in this
    # process (preprocessing, translation) log to their files, the console shows warnings only
    logging.basicConfig(level=logging.WARNING)
    try:
        run(args)
    except fairseq_cli.FairseqCommandError as error:
        lines = str(error).splitlines()
        print(f"error: {lines[0]}\n  {lines[-1].strip()} (logs in {args.workdir})",
              file=sys.stderr)
        sys.exit(2)


def run(args):
    raw = os.path.join(args.workdir, "raw")
    data = os.path.join(args.workdir, "data-bin")
    print(f"[1/4] building a toy translation corpus in {raw}", flush=True)
    layout = Layout(("src", "tgt"))  # word level: no sentencepiece step
    TRANSLATION.write_tiny_corpus(
        raw, layout, {"train": args.train_size, "valid": 300, "test": args.test_size},
        seed=args.seed)
    prefixes = {split: layout.prefix(raw, split) for split in SPLITS}
    print("[2/4] fairseq-preprocess", flush=True)
    if os.path.isdir(data):
        shutil.rmtree(data)  # an earlier run's binarized corpus (the corpus is rebuilt)
    fairseq_cli.preprocess(data, prefixes["train"], prefixes["valid"], prefixes["test"])

    archs = (TRANSLATION.archs["memsizer"], TRANSLATION.archs["transformer"])
    runs = []
    for arch in archs:
        save_dir = os.path.join(args.workdir, "checkpoints", arch)
        if os.path.isdir(save_dir):
            shutil.rmtree(save_dir)  # an earlier run's checkpoints would be resumed
        runs.append(TrainingRun(arch, train_args(data, save_dir, arch, args.updates, args.seed),
                                save_dir, os.path.join(args.workdir, f"train.{arch}.log"),
                                args.updates))
    print(f"[3/4] fairseq-train, {args.updates} updates each, both models at once "
          f"(one thread each)", flush=True)
    trained = train_side_by_side(runs, threads=1, task="train", out=sys.stderr)

    print("[4/4] translating the test set (fairseq's beam search, beam 4)", flush=True)
    rows = []
    for run in runs:
        for split in ("valid", "test"):  # the validation set first, untimed: a warm-up
            with warnings.catch_warnings():  # fairseq's configuration notices (hydra, torch)
                warnings.simplefilter("ignore", UserWarning)
                result = generation.generate([
                    data, "--user-dir", fairseq_cli.USER_DIR, "--path",
                    os.path.join(run.save_dir, "checkpoint_best.pt"), "--gen-subset", split,
                    "--beam", "4", "--batch-size", "64", "--required-batch-size-multiple", "1",
                    "--cpu", "--num-workers", "0"],
                    log_path=os.path.join(args.workdir, f"generate.{split}.{run.name}.log"))
        rows.append((run.name, generation.bleu(result)["sacrebleu"], result.seconds,
                     result.sentences / result.seconds, result.tokens / result.seconds,
                     trained[run.name]["wall_seconds"]))
        translated = result.sentences

    print()
    print(f"Toy translation, {translated} test sentences, {args.updates} updates each, "
          f"same size ({SIZE_NAME}), beam 4, CPU, one thread")
    print("| model | BLEU | decode time (s) | sentences/s | tokens/s | train time (s) |")
    print("|---|---|---|---|---|---|")
    for arch, bleu, seconds, sps, tps, train_seconds in rows:
        print(f"| {arch} | {bleu:.2f} | {seconds:.2f} | {sps:.1f} | {tps:.1f} "
              f"| {train_seconds:.0f} |")
    speedup = rows[1][2] / rows[0][2] if rows[0][2] else float("nan")
    print(f"\nMemsizer decodes {speedup:.2f}x as fast as the Transformer "
          f"(decode time ratio, same run).")

    print(f"\nDecoding cost against the output length ({PROFILE_SENTENCES} test sentences, "
          f"greedy, token by token; median step time since the previous row)")
    profiles = {run.name: decoding_profile(os.path.join(run.save_dir, "checkpoint_best.pt"),
                                           data, PROFILE_LENGTHS, sentences=PROFILE_SENTENCES,
                                           threads=int(os.environ.get("OMP_NUM_THREADS", "1")))
                for run in runs}
    print(profile_table(profiles))
    plot = os.path.join(args.workdir, "decoding.png")
    plot_profiles(profiles, plot)
    print(f"Plot: {plot}. Logs and checkpoints: {args.workdir}")


if __name__ == "__main__":
    main()
