"""``--task summarization``: a source document to a target summary.

fairseq's translation task with summarization defaults, on the same binarized layout
(``fairseq-preprocess --source-lang source --target-lang target --joined-dictionary ...``):

* ``--truncate-source`` is on: documents longer than ``--max-source-positions`` (1024) are cut
  instead of being dropped; ``--truncate-source false`` (or ``--no-truncate-source``) turns it
  off. A joined dictionary (``--joined-dictionary`` at preprocessing, ``--share-all-embeddings``
  at training) works as in translation.
* ``--eval-rouge``: decode the validation set during training and log ``rouge_1``, ``rouge_2``
  and ``rouge_l`` (rouge-score F1 x 100, mean over sentences), so that
  ``--best-checkpoint-metric rouge_l --maximize-best-checkpoint-metric`` keeps the best
  summariser. ``--eval-rouge-args`` holds the generation arguments as JSON (as
  ``--eval-bleu-args``), ``--eval-rouge-remove-bpe sentencepiece`` undoes the subwords,
  ``--eval-rouge-detok`` names a fairseq tokenizer to undo, ``--eval-rouge-print-samples``
  logs one hypothesis and its reference per validation batch.
"""
import json
import logging
from argparse import Namespace
from dataclasses import dataclass, field
from typing import Optional

from fairseq import metrics, utils
from fairseq.data import encoders
from fairseq.tasks import register_task
from fairseq.tasks.translation import TranslationConfig, TranslationTask

from ..config import str2bool
from ..scoring.rouge import RougeF1

logger = logging.getLogger(__name__)

# Generation during validation unless --eval-rouge-args says otherwise.
DEFAULT_EVAL_ROUGE_ARGS = '{"beam": 4, "max_len_a": 0, "max_len_b": 200, "no_repeat_ngram_size": 3}'
_METRIC_NAMES = {"rouge1": "rouge_1", "rouge2": "rouge_2", "rougeL": "rouge_l",
                 "rougeLsum": "rouge_lsum"}


@dataclass
class SummarizationConfig(TranslationConfig):
    truncate_source: bool = field(
        default=True,
        metadata={"help": "truncate source documents to --max-source-positions (default: on; "
                  "--truncate-source false or --no-truncate-source turns it off)"},
    )
    eval_rouge: bool = field(
        default=False, metadata={"help": "evaluation with ROUGE during validation"}
    )
    eval_rouge_args: Optional[str] = field(
        default=DEFAULT_EVAL_ROUGE_ARGS,
        metadata={"help": "generation args for ROUGE scoring as a JSON string, e.g. "
                  '\'{"beam": 4, "lenpen": 2.0, "min_len": 55, "no_repeat_ngram_size": 3}\''},
    )
    eval_rouge_remove_bpe: Optional[str] = field(
        default=None,
        metadata={"help": "remove subwords before computing ROUGE (sentencepiece, "
                  "subword_nmt, '@@ ' ...)", "argparse_const": "@@ "},
    )
    eval_rouge_detok: str = field(
        default="space",
        metadata={"help": "fairseq tokenizer to undo before computing ROUGE (e.g. 'moses'); "
                  "'space' does nothing"},
    )
    eval_rouge_detok_args: Optional[str] = field(
        default="{}", metadata={"help": "args for building the tokenizer, as JSON string"}
    )
    eval_rouge_use_stemmer: bool = field(
        default=False, metadata={"help": "ROUGE during validation: Porter stemmer"}
    )
    eval_rouge_lsum: bool = field(
        default=False, metadata={"help": "ROUGE during validation: also log rouge_lsum"}
    )
    eval_rouge_sentence_separator: Optional[str] = field(
        default=None,
        metadata={"help": "ROUGE during validation: token separating summary sentences"},
    )
    eval_rouge_print_samples: bool = field(
        default=False, metadata={"help": "print sample generations during validation"}
    )


@register_task("summarization", dataclass=SummarizationConfig)
class SummarizationTask(TranslationTask):
    """Summarise a source document into a target summary (fairseq's translation data layout)."""

    cfg: SummarizationConfig

    @classmethod
    def add_args(cls, parser):
        # Added before the dataclass's flags, which then skip the name: a boolean field that
        # defaults to True would otherwise become a flag that turns it *off*.
        parser.add_argument(
            "--truncate-source", type=str2bool, nargs="?", const=True, default=True,
            metavar="BOOL",
            help="truncate source documents to --max-source-positions (default: true)",
        )
        parser.add_argument(
            "--no-truncate-source", dest="truncate_source", action="store_false",
            help="drop (do not truncate) documents longer than --max-source-positions",
        )
        super().add_args(parser)

    def build_model(self, cfg, from_checkpoint=False):
        model = super().build_model(cfg, from_checkpoint)
        if self.cfg.eval_rouge:
            detok_args = json.loads(self.cfg.eval_rouge_detok_args or "{}")
            self.rouge_tokenizer = encoders.build_tokenizer(
                Namespace(tokenizer=self.cfg.eval_rouge_detok, **detok_args)
            )
            gen_args = json.loads(self.cfg.eval_rouge_args or "{}")
            self.rouge_generator = self.build_generator([model], Namespace(**gen_args))
            self.rouge = RougeF1(
                use_stemmer=self.cfg.eval_rouge_use_stemmer,
                lsum=self.cfg.eval_rouge_lsum,
                sentence_separator=self.cfg.eval_rouge_sentence_separator,
            )
        return model

    def valid_step(self, sample, model, criterion):
        loss, sample_size, logging_output = super().valid_step(sample, model, criterion)
        if self.cfg.eval_rouge:
            references, hypotheses = self._generate_for_rouge(sample, model)
            for name, value in self.rouge.sums(references, hypotheses).items():
                logging_output["_rouge_sum_" + name] = value
            logging_output["_rouge_count"] = len(references)
        return loss, sample_size, logging_output

    def reduce_metrics(self, logging_outputs, criterion):
        super().reduce_metrics(logging_outputs, criterion)
        if not self.cfg.eval_rouge:
            return

        def total(key):
            value = sum(log.get(key, 0) for log in logging_outputs)
            return value.item() if hasattr(value, "item") else value

        count = total("_rouge_count")
        if count <= 0:
            return
        metrics.log_scalar("_rouge_count", count)
        for name, metric in _METRIC_NAMES.items():
            if name not in self.rouge.types:
                continue
            metrics.log_scalar("_rouge_sum_" + name, total("_rouge_sum_" + name))

            def mean(meters, name=name):
                return round(
                    100.0 * meters["_rouge_sum_" + name].sum / meters["_rouge_count"].sum, 2
                )

            metrics.log_derived(metric, mean)

    def _decode(self, tokens, escape_unk=False):
        text = self.tgt_dict.string(
            tokens.int().cpu(),
            self.cfg.eval_rouge_remove_bpe,
            # as in translation: <unk> in a reference never matches <unk> in a hypothesis
            unk_string=("UNKNOWNTOKENINREF" if escape_unk else "UNKNOWNTOKENINHYP"),
        )
        if self.rouge_tokenizer is not None:
            text = self.rouge_tokenizer.decode(text)
        return text

    def _generate_for_rouge(self, sample, model):
        output = self.inference_step(self.rouge_generator, [model], sample, prefix_tokens=None)
        hypotheses, references = [], []
        for i, hypos in enumerate(output):
            hypotheses.append(self._decode(hypos[0]["tokens"]))
            references.append(
                self._decode(utils.strip_pad(sample["target"][i], self.tgt_dict.pad()),
                             escape_unk=True)
            )
        if self.cfg.eval_rouge_print_samples and hypotheses:
            logger.info("example hypothesis: " + hypotheses[0])
            logger.info("example reference: " + references[0])
        return references, hypotheses
