import gc
import os
import shutil
import sys

import pytest
import torch

# flash-linear-attention's Triton kernels (the tests marked triton) run on a CPU only under
# Triton's interpreter, which must be chosen before triton is imported
if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "tests"))
sys.path.insert(0, ROOT)


import memsizer_fairseq  # noqa: E402,F401  (imports fairseq quietly, before any test module does)
from fairseq_helpers import TOY_MODEL, TOY_TRAIN  # noqa: E402

# what the imports made lives as long as the worker: out of the way of the garbage collector's
# full passes (each walked the whole import-time heap, about 0.2 s)
gc.freeze()


# The slowest modules, slowest first (measured with --durations): pytest-xdist's --dist loadfile
# hands out modules in collection order, so these start first and the short ones fill the gaps
# at the end instead of one long module running alone on one worker.
SLOWEST_FIRST = (
    "tools/compare/test_compare.py",
    "tools/recipes/test_recipes.py",
    "models/test_generation_matrix.py",
    "models/test_export.py",
    "test_packaging.py",
    "models/test_lm.py",
    "tools/benchmark/test_benchmark.py",
    "compat/test_resume.py",
    "compat/test_fairseq_export.py",
    "tasks/test_summarization.py",
    "compat/test_distributed.py",
    "models/test_cli.py",
    "compat/test_stock_equality.py",
    "compat/test_reliability.py",
)


def pytest_collection_modifyitems(config, items):
    def rank(item):
        path = os.path.relpath(str(item.fspath), os.path.join(ROOT, "tests")).replace(os.sep, "/")
        return SLOWEST_FIRST.index(path) if path in SLOWEST_FIRST else len(SLOWEST_FIRST)

    items.sort(key=rank)  # stable: each module keeps its own order


@pytest.fixture(autouse=True)
def _deterministic():
    torch.manual_seed(0)
    yield


@pytest.fixture
def fla_kernels(monkeypatch):
    """fla-core's kernels ready to run: under the interpreter, the autotuner takes each kernel's
    first configuration instead of timing them all (it cannot time without a GPU driver)."""
    from triton.runtime import autotuner

    if os.environ.get("TRITON_INTERPRET") == "1":
        monkeypatch.setattr(autotuner.Autotuner, "prune_configs",
                            lambda self, kwargs: self.configs[:1])
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def built_once(tmp_path_factory, name, build):
    """``build(folder)`` run once for the whole test session, whichever pytest-xdist worker
    asks first (the others wait for it and reuse the folder); the folder."""
    from filelock import FileLock

    base = tmp_path_factory.getbasetemp()
    if os.environ.get("PYTEST_XDIST_WORKER"):  # a worker: the workers' common folder
        base = base.parent
    folder = base / name
    with FileLock(str(folder) + ".lock"):
        if not (folder / ".built").exists():
            shutil.rmtree(folder, ignore_errors=True)
            folder.mkdir()
            build(folder)
            (folder / ".built").touch()
    return folder


@pytest.fixture(scope="session")
def trained(tmp_path_factory):
    """A Memsizer translation model trained on the toy task (once for all workers): (data-bin,
    save dir, root). Tests that train on from it copy it first."""
    from memsizer_fairseq.tools.toolkit import fairseq_cli
    from memsizer_fairseq.tools.toolkit.toy_data import write_toy_translation

    def build(root):
        prefixes = write_toy_translation(
            str(root / "raw"), {"train": 4000, "valid": 100, "test": 100}, seed=5
        )
        data = str(root / "bin")
        fairseq_cli.preprocess(data, prefixes["train"], prefixes["valid"], prefixes["test"])
        fairseq_cli.run_fairseq(
            "train",
            [data, "--user-dir", fairseq_cli.USER_DIR, *TOY_MODEL, *TOY_TRAIN, "--max-update",
             "250", "--save-dir", str(root / "ckpt")],
            str(root / "train.log"),
        )

    root = built_once(tmp_path_factory, "cli", build)
    return str(root / "bin"), str(root / "ckpt"), root


@pytest.fixture(scope="session")
def toy_checkpoints(trained):
    """Checkpoints on the toy task's dictionary: the Memsizer model above, a Transformer and a
    ``memsizer_lm`` trained on the target side (for shallow fusion); short runs."""
    from memsizer_fairseq.tools.toolkit import fairseq_cli

    data, save_dir, root = trained
    transformer = str(root / "transformer")
    model = ["transformer_tiny" if flag == "memsizer_transformer_tiny" else flag
             for flag in TOY_MODEL]
    # with the plugin's fairseq fixes, as the project's tools train every baseline
    fairseq_cli.run_fairseq("train", [data, "--user-dir", fairseq_cli.USER_DIR, *model, *TOY_TRAIN,
                                   "--max-update", "100", "--save-dir", transformer],
                            str(root / "transformer.log"))
    # fairseq-generate --lm-path loads the LM's dictionary from the data directory: dict.txt
    shutil.copy(os.path.join(data, "dict.tgt.txt"), os.path.join(data, "dict.txt"))
    lm_data = str(root / "lm-bin")
    fairseq_cli.binarize([  # fairseq-preprocess in this process
        "--only-source", "--trainpref", root / "raw" / "train.tgt", "--validpref",
        root / "raw" / "valid.tgt", "--srcdict", os.path.join(data, "dict.tgt.txt"),
        "--workers", "1"], lm_data)
    lm = str(root / "lm")
    fairseq_cli.run_fairseq("train", [
        lm_data, "--user-dir", fairseq_cli.USER_DIR, "--task", "language_modeling",
        "--arch", "memsizer_lm", "--decoder-layers", "2", "--decoder-embed-dim", "64",
        "--decoder-ffn-embed-dim", "128", "--decoder-attention-heads", "2",
        "--tokens-per-sample", "64", "--sample-break-mode", "eos", "--optimizer", "adam",
        "--lr", "3e-3", "--lr-scheduler", "inverse_sqrt", "--warmup-updates", "20",
        "--max-tokens", "1024", "--max-update", "60", "--cpu", "--num-workers", "0",
        "--save-dir", lm, "--no-epoch-checkpoints", "--seed", "1"], str(root / "lm.log"))
    return {"memsizer": os.path.join(save_dir, "checkpoint_best.pt"),
            "transformer": os.path.join(transformer, "checkpoint_last.pt"),
            "lm": os.path.join(lm, "checkpoint_last.pt"), "data": data, "root": root}
