"""Build fairseq models through fairseq's own registries and argument parsing."""
import os

from fairseq import options, tasks
from fairseq.dataclass.utils import convert_namespace_to_omegaconf

from memsizer_fairseq.toolkit.fairseq_cli import USER_DIR

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


def run_in_process(tool: str, args, stdin: str = None) -> str:
    """fairseq-generate / -interactive in this process (no interpreter start-up): their
    standard output. Errors propagate as exceptions."""
    import contextlib
    import io
    import sys

    from fairseq_cli import generate, interactive

    parser = options.get_generation_parser(interactive=tool == "interactive")
    parsed = options.parse_args_and_arch(parser, [str(a) for a in args])
    main = {"generate": generate.main, "interactive": interactive.cli_main_args
            if hasattr(interactive, "cli_main_args") else interactive.main}[tool]
    out, previous_stdin = io.StringIO(), sys.stdin
    try:
        if stdin is not None:
            sys.stdin = io.StringIO(stdin)
        with contextlib.redirect_stdout(out):
            main(convert_namespace_to_omegaconf(parsed))
    finally:
        sys.stdin = previous_stdin
    return out.getvalue()
