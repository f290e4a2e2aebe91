"""The command line of the recipes (``python -m memsizer_fairseq.tools.recipes``,
examples/*/run.sh)."""
import argparse
import os
import shlex
import sys
from typing import Optional, Sequence

from ..toolkit import fairseq_cli
from .catalog import RECIPES, TASK_RECIPES
from .hydra import write_configs
from .runner import RecipeResult, Runner


def main(argv: Optional[Sequence[str]] = None) -> Optional[RecipeResult]:
    """``[--task TASK] RECIPE (--tiny | --raw-dir DIR) ...``; ``--task`` narrows the recipes."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv == ["--write-configs"]:
        for path in write_configs():
            print(path)
        return None
    pre = argparse.ArgumentParser(add_help=False)
    pre.add_argument("--task", choices=sorted(TASK_RECIPES))
    known, argv = pre.parse_known_args(argv)
    task = known.task
    names = TASK_RECIPES[task] if task else list(RECIPES)
    parser = argparse.ArgumentParser(
        prog=f"examples/{task}/run.sh" if task else "python -m memsizer_fairseq.tools.recipes",
        description="Data preparation, training and evaluation of a Memsizer recipe "
        f"({', '.join(names)}).",
    )
    single = {"nargs": "?", "default": names[0]} if len(names) == 1 else {}
    parser.add_argument("recipe", choices=names, **single)
    parser.add_argument("--tiny", action="store_true",
                        help="run on a small synthetic corpus the recipe builds (minutes, CPU)")
    parser.add_argument("--raw-dir", help="folder with the raw text files (see the README)")
    parser.add_argument("--work-dir", help="where data, checkpoints and logs go "
                        "(default: runs/<recipe>[-tiny] in the repository)")
    parser.add_argument("--workers", type=int, default=1, help="preprocessing workers")
    parser.add_argument("--dry-run", action="store_true", help="print the commands only")
    parser.add_argument("--train-args", default="", help="extra fairseq-train arguments")
    parser.add_argument("--evaluate-args", default="",
                        help="extra fairseq-generate / fairseq-eval-lm arguments")
    args = parser.parse_args(argv)
    if not args.tiny and not args.raw_dir:
        parser.error("give --raw-dir DIR with your raw text files, or --tiny")
    recipe = RECIPES[args.recipe]
    work_dir = args.work_dir or os.path.join(
        fairseq_cli.REPO_ROOT, "runs", recipe.name + ("-tiny" if args.tiny else ""))
    runner = Runner(recipe, work_dir, raw_dir=args.raw_dir, tiny=args.tiny, workers=args.workers,
                    dry_run=args.dry_run, extra_train=shlex.split(args.train_args),
                    extra_evaluate=shlex.split(args.evaluate_args))
    try:
        return runner.run()
    except (FileNotFoundError, ValueError, fairseq_cli.FairseqCommandError) as error:
        print(f"error: {error}", file=sys.stderr)
        sys.exit(2)
