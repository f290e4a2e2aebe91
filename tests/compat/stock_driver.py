"""fairseq-train, the same fairseq-train resumed from its checkpoint_last.pt, then fairseq-generate,
each as ``python -m`` runs it (its module run afresh as ``__main__``), in this interpreter.
Imports neither the plugin nor the tests' helpers, so that a run without ``--user-dir`` is
stock fairseq:

    python stock_driver.py '[data, save_dir, user_dir or "", train, first, resumed, generate]'
"""
import json
import os
import runpy
import sys
import warnings


def run(module, argv):
    saved = sys.argv
    sys.argv = [module, *map(str, argv)]
    try:
        with warnings.catch_warnings():  # runpy's notice where the module was imported before
            warnings.filterwarnings("ignore", f"'{module}' found in sys.modules", RuntimeWarning)
            runpy.run_module(module, run_name="__main__", alter_sys=True)
    except SystemExit as stop:
        if stop.code:
            raise
    finally:
        sys.argv = saved


def train_resume_generate(data, save_dir, user_dir, train, first, resumed, generate):
    plugin = ["--user-dir", user_dir] if user_dir else []
    for budget in (first, resumed):
        run("fairseq_cli.train", [data, *plugin, *train, *budget, "--save-dir", save_dir])
    run("fairseq_cli.generate", [data, *plugin, "--path",
                                 os.path.join(save_dir, "checkpoint_last.pt"), *generate])


if __name__ == "__main__":
    train_resume_generate(*json.loads(sys.argv[1]))
    sys.stdout.flush()
    os._exit(0)  # fairseq's data buffer thread may abort a plain exit (exit 134)
