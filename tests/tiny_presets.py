"""Every architecture of ``memsizer_fairseq/models/presets.py`` built at tiny sizes through
fairseq's argument parsing and task (the export and device-read tests run each of them)."""
import os
import shutil

from fairseq import options, tasks
from fairseq.dataclass.utils import convert_namespace_to_omegaconf

from fairseq_helpers import write_dicts
from memsizer_fairseq.models.presets import PRESETS
from memsizer_fairseq.tools.toolkit.fairseq_cli import USER_DIR

ARCHS = [preset.arch for preset in PRESETS]
TASK_FLAGS = {
    "translation": ["--task", "translation", "--source-lang", "src", "--target-lang", "tgt"],
    "summarization": ["--task", "summarization", "--source-lang", "src", "--target-lang", "tgt"],
    "language_modeling": ["--task", "language_modeling", "--tokens-per-sample", "64"],
}
SEQ2SEQ_SIZES = [
    "--encoder-embed-dim", "16", "--decoder-embed-dim", "16", "--encoder-ffn-embed-dim", "32",
    "--decoder-ffn-embed-dim", "32", "--encoder-layers", "1", "--decoder-layers", "2",
    "--encoder-attention-heads", "2", "--decoder-attention-heads", "2", "--cross-proj-dim", "4",
]
LM_SIZES = [
    "--decoder-embed-dim", "16", "--decoder-input-dim", "16", "--decoder-output-dim", "16",
    "--decoder-ffn-embed-dim", "32", "--decoder-layers", "2", "--decoder-attention-heads", "2",
    "--causal-proj-dim", "4", "--max-target-positions", "64",
]
# the adaptive input and softmax of the Wikitext-103 preset, cut for a vocabulary of 24
ADAPTIVE = ["--adaptive-input-cutoff", "10,16", "--adaptive-softmax-cutoff", "10,16"]


def task_of(arch: str) -> str:
    return next(preset.task for preset in PRESETS if preset.arch == arch)


def write_data_dir(directory: str) -> str:
    """Dictionaries for every task (``dict.src.txt``, ``dict.tgt.txt``, ``dict.txt``)."""
    write_dicts(directory)
    shutil.copy(os.path.join(directory, "dict.src.txt"), os.path.join(directory, "dict.txt"))
    return directory


def build_preset(data_dir: str, arch: str, extra=()):
    """``arch`` at tiny sizes, dropout off, in eval mode: (model, task)."""
    task_name = task_of(arch)
    sizes = LM_SIZES if task_name == "language_modeling" else SEQ2SEQ_SIZES
    if "wiki103" in arch:
        sizes = sizes + ADAPTIVE
    parser = options.get_training_parser()
    args = options.parse_args_and_arch(parser, [
        data_dir, "--user-dir", USER_DIR, *TASK_FLAGS[task_name], "--arch", arch, *sizes,
        "--dropout", "0", *extra])
    cfg = convert_namespace_to_omegaconf(args)
    task = tasks.setup_task(cfg.task)
    return task.build_model(cfg.model).eval(), task
