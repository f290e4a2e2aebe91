"""Quick-start: train Memsizer and a same-size Transformer on a built-in toy translation task.

Builds a synthetic corpus (no download), binarizes it with fairseq-preprocess, trains
``memsizer_transformer`` and fairseq's ``transformer`` of the same size with fairseq-train (same
updates, same seed), decodes the test set with fairseq-generate (beam 4) and prints BLEU and
decoding time side by side. Then it shows what Memsizer is for: each model decodes test sentences
token by token up to 256 output tokens, and the time of a decoder step and the decoding state per
sentence are printed (and plotted to ``decoding.png``) against the output length: the
Transformer's grow with it, Memsizer's stay flat. Takes a few minutes on 2 CPU cores.
"""
import argparse
import os
import shutil
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, ROOT)

from memsizer_fairseq.tools.compare.state_size import decoding_profile  # noqa: E402
from memsizer_fairseq.tools.toolkit import fairseq_cli  # noqa: E402
from memsizer_fairseq.tools.tasks import SPLITS, TRANSLATION, Layout  # noqa: E402

MODEL_SIZE = [
    "--encoder-layers", "2", "--decoder-layers", "2",
    "--encoder-embed-dim", "128", "--decoder-embed-dim", "128",
    "--encoder-ffn-embed-dim", "256", "--decoder-ffn-embed-dim", "256",
    "--encoder-attention-heads", "4", "--decoder-attention-heads", "4",
    "--share-all-embeddings",
]


def train_args(data, save_dir, arch, updates, seed):
    return [
        data, "--user-dir", fairseq_cli.USER_DIR, "--arch", arch, *MODEL_SIZE,
        "--optimizer", "adam", "--adam-betas", "(0.9, 0.98)", "--lr", "2e-3",
        "--lr-scheduler", "inverse_sqrt", "--warmup-updates", "150", "--clip-norm", "1.0",
        "--criterion", "label_smoothed_cross_entropy", "--label-smoothing", "0.1",
        "--dropout", "0.1", "--max-tokens", "2048", "--max-update", updates, "--seed", seed,
        "--save-dir", save_dir, "--no-epoch-checkpoints", "--log-format", "simple",
        "--log-interval", "100", "--num-workers", "0", "--cpu",
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
    parser.add_argument("--updates", type=at_least(1), default=800,
                        help="training updates per model")
    parser.add_argument("--train-size", type=at_least(100), default=8000)
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

    results = {}
    for step, arch in ((3, TRANSLATION.archs["memsizer"]), (3, TRANSLATION.archs["transformer"])):
        save_dir = os.path.join(args.workdir, "checkpoints", arch)
        print(f"[{step}/4] fairseq-train --arch {arch} ({args.updates} updates)", flush=True)
        start = time.time()
        fairseq_cli.run_fairseq(
            "train", train_args(data, save_dir, arch, args.updates, args.seed),
            os.path.join(args.workdir, f"train.{arch}.log"),
        )
        train_seconds = time.time() - start
        results[arch] = (train_seconds, save_dir)

    print("[4/4] fairseq-generate --beam 4 on the test set", flush=True)
    rows = []
    for arch, (train_seconds, save_dir) in results.items():
        gen = fairseq_cli.generate(
            data, os.path.join(save_dir, "checkpoint_best.pt"), beam=4, batch_size=64,
            extra=["--cpu", "--num-workers", "0"],
            log_path=os.path.join(args.workdir, f"generate.{arch}.log"),
        )
        rows.append((arch, gen.bleu, gen.seconds, gen.sentences_per_second,
                     gen.tokens / gen.seconds, train_seconds))

    print()
    print(f"Toy translation, {args.test_size} test sentences, {args.updates} updates each, "
          f"same size (2+2 layers, d=128), beam 4, CPU")
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
    profiles = {arch: decoding_profile(os.path.join(save_dir, "checkpoint_best.pt"), data,
                                       PROFILE_LENGTHS, sentences=PROFILE_SENTENCES,
                                       threads=int(os.environ.get("OMP_NUM_THREADS", "1")))
                for arch, (_seconds, save_dir) in results.items()}
    print(profile_table(profiles))
    plot = os.path.join(args.workdir, "decoding.png")
    plot_profiles(profiles, plot)
    print(f"Plot: {plot}. Logs and checkpoints: {args.workdir}")


if __name__ == "__main__":
    main()
