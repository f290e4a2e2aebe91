"""``python -m memsizer_fairseq.tools.compare``: Memsizer against the Transformer on real text.

    python -m memsizer_fairseq.tools.compare                  # ../shared/data, all three tasks
    python -m memsizer_fairseq.tools.compare --data-root DIR  # DIR/{mt-en-de,sum-debian,lm-debian}
    python -m memsizer_fairseq.tools.compare --tasks translation --raw-dir DIR   # one task
    python -m memsizer_fairseq.tools.compare --budget small --seeds 1 2   # d 128, minutes a run
    python -m memsizer_fairseq.tools.compare --budget tiny    # minutes, synthetic corpora (CI)

For each task and budget (``WORK_DIR/<budget>/<task>``): sentencepiece, fairseq-preprocess, then a
Transformer and a Memsizer model of the same size trained for the same updates with the same
seed (side by side, the cores split between them), once per ``--seeds`` seed, and measured on
the test set (``runner.py``); the other configurations as the flags below ask. Writes
``WORK_DIR/report.md`` and its plots. Stop it at any time (Ctrl-C); the same command resumes.
"""
import argparse
import json
import os
import re
import shlex
import shutil
import signal
import sys
from typing import Dict, List, Optional, Sequence

from ..toolkit import fairseq_cli

from .data import check_raw_dir
from .progress import task_status
from .report import load_states, write_report
from .runner import Comparison
from .settings import BUDGETS, FIXES, TASKS

DEFAULT_DATA_ROOT = os.path.join(os.path.dirname(fairseq_cli.REPO_ROOT), "shared", "data")
_FRONTIER_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")


def named_configuration(text: str):
    """``NAME=FLAGS`` -> (NAME, [flags]); NAME becomes part of file names."""
    name, equals, flags = text.partition("=")
    if not equals or not _FRONTIER_NAME.fullmatch(name):
        raise argparse.ArgumentTypeError(
            f"expected NAME=FLAGS with NAME of letters, digits, '.', '_' or '-', got {text!r}")
    return name, shlex.split(flags)


def frontier_for(args, task: str) -> Dict[str, List[str]]:
    """The frontier configurations to add for a task: those given, or with a bare --frontier
    the task's default set for the budget (settings.py); none without --frontier."""
    if args.frontier is None:
        return {}
    if not args.frontier:
        defaults = TASKS[task].budgets[args.budget].frontier
        return {name: shlex.split(flags) for name, flags in defaults.items()}
    return dict(args.frontier)


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m memsizer_fairseq.tools.compare",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("--tasks", nargs="+", choices=list(TASKS), default=list(TASKS),
                        help="which comparisons to run (default: all three)")
    parser.add_argument("--data-root", default=None,
                        help="folder holding mt-en-de/, sum-debian/ and lm-debian/ "
                             f"(default: {DEFAULT_DATA_ROOT} when present)")
    parser.add_argument("--raw-dir", default=None,
                        help="the raw text of the one task given with --tasks (any folder)")
    parser.add_argument("--work-dir", default="compare-work",
                        help="where everything goes (WORK_DIR/<budget>/<task>)")
    parser.add_argument("--budget", choices=BUDGETS, default="full",
                        help="model size, updates and validation set (settings.py): full "
                             "(d 256), small (d 128, minutes a run) or tiny (synthetic corpora, "
                             "the CI mode)")
    parser.add_argument("--tiny", action="store_const", const="tiny", dest="budget",
                        help="the same as --budget tiny")
    parser.add_argument("--seeds", nargs="+", type=int, default=[1], metavar="S",
                        help="train every configuration once per seed (fairseq-train's --seed; "
                             "the data are the same); the report gives each and the mean")
    parser.add_argument("--max-update", type=int, default=None,
                        help="updates per model (default: the budget's in settings.py)")
    parser.add_argument("--train-args", default="",
                        help="extra fairseq-train flags for every model (Transformer, Memsizer, "
                             "frontier, fine-tuning), e.g. a smaller model and '--patience 4' "
                             "for a plateau study; a work directory keeps the ones it began with, "
                             "except that a larger --patience trains stopped runs on")
    parser.add_argument("--memsizer-args", default="",
                        help="extra fairseq-train flags for the Memsizer model only, e.g. "
                             "'--causal-proj-dim 8 --q-init-scale 4'")
    parser.add_argument("--frontier", nargs="*", type=named_configuration, default=None,
                        metavar="NAME=FLAGS",
                        help="also train these Memsizer configurations, each NAME with the extra "
                             "fairseq-train FLAGS, e.g. 'softmax-cross=--cross-attention "
                             "softmax' (no NAME=FLAGS: the task's default set), and report "
                             "quality against generation speed and decoding-state size")
    parser.add_argument("--uptrain", nargs="*", choices=list(TASKS), default=None,
                        metavar="TASK",
                        help="also convert the trained Transformer to Memsizer and fine-tune it, "
                             "for these tasks (no TASK: every task run)")
    parser.add_argument("--uptrain-configs", nargs="+", type=named_configuration, default=None,
                        metavar="NAME=FLAGS",
                        help="--uptrain: one converted and fine-tuned model per NAME, FLAGS "
                             "going to the uptrain command (its Memsizer flags also to the "
                             "fine-tuning), e.g. 'transfer=--transfer-updates 200' "
                             "(default: 'plain=', converted without flags, unless the work "
                             "directory holds others)")
    parser.add_argument("--uptrain-updates", type=int, default=None,
                        help="fine-tuning updates of --uptrain "
                             "(default: a third of --max-update)")
    parser.add_argument("--distill", action="store_true",
                        help="translation and summarization: the trained Transformer translates "
                             "the training split (the test's beam settings) and the Memsizer "
                             "configurations train on its translations, from scratch and "
                             "uptrained (sequence-level knowledge distillation)")
    parser.add_argument("--attention-init", choices=("svd", "paper"), default="svd",
                        help="--uptrain: how Memsizer's slot projections start (see uptrain.py)")
    parser.add_argument("--vocab-size", type=int, default=None,
                        help="sentencepiece vocabulary (default: the task's, 8000, lowered to "
                             "what a small corpus allows)")
    parser.add_argument("--threads", type=int, default=None,
                        help="CPU threads in all (default: every core)")
    parser.add_argument("--device", choices=("cpu", "cuda"), default=None,
                        help="default: cuda when available")
    parser.add_argument("--evaluate-again", action="store_true",
                        help="redo the test-set scores and generation timings of finished runs "
                             "(e.g. on a machine with nothing else running)")
    parser.add_argument("--restart", action="store_true",
                        help="delete the work directory of each task first")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")
    parser.add_argument("--status", action="store_true",
                        help="train nothing: print how far each task's training runs have come "
                             "(from their logs: updates, best and last validation score, "
                             "validations since the best) and plot their curves into "
                             "WORK_DIR/status_<task>.png")
    args = parser.parse_args(argv)
    if args.raw_dir and len(args.tasks) != 1:
        parser.error("--raw-dir is the data of one task: give exactly one --tasks")
    for option in ("frontier", "uptrain_configs"):
        names = [name for name, _ in getattr(args, option) or ()]
        repeated = sorted({name for name in names if names.count(name) > 1})
        if repeated:
            parser.error(f"--{option.replace('_', '-')}: each NAME once, got "
                         f"{', '.join(repeated)} more than once")
    if args.uptrain_configs and args.uptrain is None:
        parser.error("--uptrain-configs needs --uptrain")
    if any(seed < 0 for seed in args.seeds):
        parser.error("--seeds: each a seed >= 0")
    args.seeds = sorted(set(args.seeds))
    for flag in ("max_update", "uptrain_updates", "threads", "vocab_size"):
        value = getattr(args, flag)
        if value is not None and value <= 0:
            parser.error(f"--{flag.replace('_', '-')} must be positive, got {value}")
    return args


def raw_dir_for(args, task: str) -> Optional[str]:
    if TASKS[task].budgets[args.budget].synthetic:
        return None
    if args.raw_dir:
        return args.raw_dir
    root = args.data_root or DEFAULT_DATA_ROOT
    if not os.path.isdir(root):
        raise SystemExit(f"error: no data: {root} does not exist; give --data-root DIR, "
                         "--raw-dir DIR (with one --tasks) or --budget tiny")
    return os.path.join(root, TASKS[task].corpus)


def _remove_unfinished(created: List[str], parent: Optional[str]):
    """A refused run leaves no trace: the task directories it made that hold no finished step
    beyond the data, and the budget directory if it made it and it is then empty."""
    for work_dir in created:
        path = os.path.join(work_dir, "state.json")
        stages = {}
        if os.path.isfile(path):
            with open(path) as f:
                stages = json.load(f).get("stages", {})
        if not set(stages) - {"data"}:
            shutil.rmtree(work_dir, ignore_errors=True)
    if parent and os.path.isdir(parent) and not os.listdir(parent):
        os.rmdir(parent)


def print_status(args) -> int:
    for name in args.tasks:
        budget_dir = os.path.join(args.work_dir, args.budget)
        plot = os.path.join(budget_dir, f"status_{name}.png")
        work_dir = os.path.join(budget_dir, name)
        print("\n".join(task_status(name, work_dir, plot if os.path.isdir(work_dir) else None)))
    return 0


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = parse_args(argv)
    args.argv = list(argv) if argv is not None else sys.argv[1:]
    if args.status:
        return print_status(args)
    if args.device is None:
        import torch

        args.device = "cuda" if torch.cuda.is_available() else "cpu"
    signal.signal(signal.SIGTERM, lambda *_: (_ for _ in ()).throw(KeyboardInterrupt()))
    from ..toolkit.plugin import fixes_on

    with fixes_on(FIXES) as fixes:
        return run(args, fixes)


def run(args, fixes) -> int:
    command = "python -m memsizer_fairseq.tools.compare " + shlex.join(args.argv)
    work_dirs: List = []
    created: List[str] = []  # task work directories this run made
    budget_dir = os.path.join(args.work_dir, args.budget)
    parent_existed = os.path.isdir(budget_dir)
    try:
        for name in args.tasks:  # every input checked before anything is written
            raw_dir = raw_dir_for(args, name)
            if raw_dir is not None:
                check_raw_dir(TASKS[name], raw_dir)
        for name in args.tasks:
            work_dir = os.path.join(budget_dir, name)
            if args.restart and os.path.isdir(work_dir):
                shutil.rmtree(work_dir)
            if not os.path.isdir(work_dir):
                created.append(work_dir)
            comparison = Comparison(
                TASKS[name], work_dir, budget=args.budget, raw_dir=raw_dir_for(args, name),
                seeds=args.seeds, max_update=args.max_update,
                memsizer_args=shlex.split(args.memsizer_args),
                train_args=shlex.split(args.train_args), frontier=frontier_for(args, name),
                uptrain=args.uptrain is not None and (not args.uptrain or name in args.uptrain),
                uptrain_configs=dict(args.uptrain_configs or []),
                uptrain_updates=args.uptrain_updates, attention_init=args.attention_init,
                distill=args.distill, fixes=fixes, threads=args.threads, device=args.device,
                progress=not args.no_progress, evaluate_again=args.evaluate_again,
                vocab_size=args.vocab_size)
            work_dirs.append((name, work_dir))
            comparison.run()
    except KeyboardInterrupt:
        fairseq_cli.stop_running_tools()
        print("\nstopped: run the same command again to resume", file=sys.stderr)
        return 130
    except (ValueError, FileNotFoundError, fairseq_cli.FairseqCommandError) as error:
        fairseq_cli.stop_running_tools()
        print(f"error: {error}", file=sys.stderr)
        _remove_unfinished(created, None if parent_existed else budget_dir)
        if not parent_existed and os.path.isdir(args.work_dir) and not os.listdir(args.work_dir):
            os.rmdir(args.work_dir)
        return 2
    finally:
        # a report of every budget and task with a finished step beyond the data (none empty)
        states = {key: state for key, state in load_states(args.work_dir).items()
                  if set(state.get("stages", {})) - {"data"}}
        if states and work_dirs:
            threads = args.threads or os.cpu_count() or 1
            report = write_report(states, args.work_dir, command, threads, args.device)
            print(f"report: {report}")
            with open(report) as f:
                print(f.read())
    return 0


if __name__ == "__main__":
    sys.exit(main())
