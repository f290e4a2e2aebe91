"""Build fairseq models through fairseq's own registries and argument parsing."""
import os

from fairseq import options, tasks
from fairseq.dataclass.utils import convert_namespace_to_omegaconf

from memsizer_fairseq.pipeline import USER_DIR

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
