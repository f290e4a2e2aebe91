"""fairseq-generate and fairseq-eval-lm in this process, and the test-set scores of their output.

:func:`generate` takes fairseq-generate's flags and runs its steps (fairseq's parser, task, model
loading, batch iterator and ``task.inference_step``) without its console output: it returns each
sentence's best hypothesis (sentencepiece pieces and post-processed text) and reference, with the
time of the search alone (what fairseq-generate reports as "Translated N sentences in S s").
:func:`eval_lm` returns fairseq-eval-lm's loss and perplexity. :func:`scores` scores text with
sacreBLEU (fairseq's ``--scoring sacrebleu``: 13a tokenization) or rouge-score (the plugin's
``--scoring rouge``). fairseq's log lines go to ``log_path``.
"""
import contextlib
import logging
import os
import time
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Sequence

import torch


@dataclass
class Generated:
    """The best hypothesis of each sentence, by sentence id."""

    pieces: Dict[int, str]  # as the model wrote it (no --post-process): distillation targets
    hypotheses: Dict[int, str]  # after --post-process, as fairseq-generate's D- lines
    references: Dict[int, str]  # as fairseq-generate's T- lines
    seconds: float  # the search alone, summed over batches
    tokens: int  # generated tokens (end of sentence included)
    scoring: Dict = field(default_factory=dict)  # the --scoring options (e.g. rouge_use_stemmer)
    # with --print-alignment hard: {(source word, target word)} of each best hypothesis
    alignments: Dict[int, set] = field(default_factory=dict)

    @property
    def sentences(self) -> int:
        return len(self.hypotheses)

    def ordered(self, texts: Dict[int, str]) -> List[str]:
        return [texts[i] for i in sorted(texts)]

    def length_ratio(self) -> Optional[float]:
        """Words of the hypotheses over words of the references."""
        reference = sum(len(text.split()) for text in self.references.values())
        hypothesis = sum(len(text.split()) for text in self.hypotheses.values())
        return hypothesis / reference if reference else None


@contextlib.contextmanager
def fairseq_logs(log_path: Optional[str]):
    """fairseq's log lines (root logger) into ``log_path`` for the duration, not the console."""
    if log_path is None:
        yield
        return
    os.makedirs(os.path.dirname(os.path.abspath(log_path)), exist_ok=True)
    root = logging.getLogger()
    saved, level = root.handlers[:], root.level
    handler = logging.FileHandler(log_path, mode="w", encoding="utf-8")
    handler.setFormatter(logging.Formatter("%(asctime)s | %(levelname)s | %(name)s | %(message)s"))
    root.handlers = [handler]
    root.setLevel(logging.INFO)  # setLevel: the loggers' cached levels are cleared
    try:
        yield
    finally:
        handler.close()
        root.handlers = saved
        root.setLevel(level)


def _parse(parser, args: Sequence[str]):
    """``args`` parsed as the command would parse them, with batches loaded in this process:
    fairseq keeps a DataLoader worker alive between epochs (persistent_workers), and releasing it
    when an in-process run returns waits out PyTorch's 5 s status interval, longer than a tiny
    test set takes to decode. A caller's ``--num-workers`` comes later and wins."""
    from fairseq import options

    return options.parse_args_and_arch(parser, ["--num-workers", "0", *map(str, args)])


@torch.no_grad()
def generate(args: Sequence[str], log_path: Optional[str] = None) -> Generated:
    """fairseq-generate ``args`` (data, ``--path``, ``--gen-subset``, beam flags ...)."""
    import ast

    import numpy as np
    from fairseq import checkpoint_utils, options, tasks, utils
    from fairseq.dataclass.utils import convert_namespace_to_omegaconf
    from fairseq_cli.generate import get_symbols_to_strip_from_output

    cfg = convert_namespace_to_omegaconf(_parse(options.get_generation_parser(), args))
    with fairseq_logs(log_path):
        utils.import_user_module(cfg.common)
        if cfg.dataset.max_tokens is None and cfg.dataset.batch_size is None:
            cfg.dataset.max_tokens = 12000
        if cfg.common.seed is not None and not cfg.generation.no_seed_provided:
            np.random.seed(cfg.common.seed)
            utils.set_torch_seed(cfg.common.seed)
        cuda = torch.cuda.is_available() and not cfg.common.cpu
        task = tasks.setup_task(cfg.task)
        models, saved_cfg = checkpoint_utils.load_model_ensemble(
            utils.split_paths(cfg.common_eval.path),
            arg_overrides=ast.literal_eval(cfg.common_eval.model_overrides), task=task)
        task.load_dataset(cfg.dataset.gen_subset, task_cfg=saved_cfg.task)
        for model in models:
            if cfg.common.fp16:
                model.half()
            if cuda:
                model.cuda()
            model.prepare_for_inference_(cfg)
        batches = task.get_batch_iterator(
            dataset=task.dataset(cfg.dataset.gen_subset), max_tokens=cfg.dataset.max_tokens,
            max_sentences=cfg.dataset.batch_size,
            max_positions=utils.resolve_max_positions(task.max_positions(),
                                                      *[m.max_positions() for m in models]),
            ignore_invalid_inputs=cfg.dataset.skip_invalid_size_inputs_valid_test,
            required_batch_size_multiple=cfg.dataset.required_batch_size_multiple,
            seed=cfg.common.seed, num_workers=cfg.dataset.num_workers,
            data_buffer_size=cfg.dataset.data_buffer_size).next_epoch_itr(shuffle=False)
        generator = task.build_generator(models, cfg.generation)
        strip = get_symbols_to_strip_from_output(generator)
        dictionary, post = task.target_dictionary, cfg.common_eval.post_process
        result = Generated({}, {}, {}, 0.0, 0, dict(cfg.scoring or {}))
        for sample in batches:
            if "net_input" not in sample:
                continue
            sample = utils.move_to_cuda(sample) if cuda else sample
            start = time.perf_counter()
            hypos = task.inference_step(generator, models, sample)
            if cuda:
                torch.cuda.synchronize()
            result.seconds += time.perf_counter() - start
            result.tokens += sum(len(h[0]["tokens"]) for h in hypos)
            for i, sentence in enumerate(sample["id"].tolist()):
                target = utils.strip_pad(sample["target"][i], dictionary.pad()).int().cpu()
                result.references[sentence] = dictionary.string(
                    target, post, escape_unk=True, extra_symbols_to_ignore=strip)
                tokens = hypos[i][0]["tokens"].int().cpu()
                result.pieces[sentence] = dictionary.string(tokens, extra_symbols_to_ignore=strip)
                result.hypotheses[sentence] = dictionary.string(tokens, post,
                                                                extra_symbols_to_ignore=strip)
                if cfg.generation.print_alignment == "hard":
                    result.alignments[sentence] = set(map(tuple, hypos[i][0]["alignment"]))
    return result


def eval_lm(args: Sequence[str], log_path: Optional[str] = None) -> Dict[str, float]:
    """fairseq-eval-lm ``args``: ``loss_base2`` and ``perplexity``."""
    from fairseq import options
    from fairseq_cli.eval_lm import main

    parsed = _parse(options.get_eval_lm_parser(), [*args, "--no-progress-bar"])
    with fairseq_logs(log_path):
        results = main(parsed)
    return {"loss_base2": float(results["loss"]), "perplexity": float(results["perplexity"])}


def bleu(generated: Generated) -> Dict[str, float]:
    """sacreBLEU with its 13a tokenization, as fairseq's ``--scoring sacrebleu``."""
    import sacrebleu

    hypotheses, references = generated.ordered(generated.hypotheses), \
        generated.ordered(generated.references)
    return {"sacrebleu": float(sacrebleu.corpus_bleu(hypotheses, [references]).score)}


def rouge(generated: Generated) -> Dict[str, float]:
    """Mean rouge-score F1 x 100 (ROUGE-1/2/L), as the plugin's ``--scoring rouge`` with its
    options (``--rouge-use-stemmer`` ...)."""
    from .plugin import RougeF1

    options = generated.scoring
    scorer = RougeF1(use_stemmer=bool(options.get("rouge_use_stemmer")),
                     lsum=bool(options.get("rouge_lsum")),
                     sentence_separator=options.get("rouge_sentence_separator"))
    return scorer.corpus(generated.ordered(generated.references),
                         generated.ordered(generated.hypotheses))
