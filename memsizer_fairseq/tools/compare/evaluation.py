"""The test-set measurements of a trained model, in this process: its task's evaluator (the
hypotheses of fairseq-generate scored with sacreBLEU / rouge-score, or fairseq-eval-lm's
perplexity), the decoding-state size and parameters; for language models the generation timing
of the models of a seed together; for distillation the Transformer's translations of the
training split."""
import os
import time
from dataclasses import dataclass
from typing import Dict, List

import torch

from ..toolkit import fairseq_cli, generation
from ..toolkit.flags import merge_args, render_args
from .settings import TaskSettings


@dataclass(frozen=True)
class Evaluation:
    task: TaskSettings
    budget: str
    threads: int
    device: str

    def _args(self, data_bin: str, checkpoint: str, subset: str) -> List[str]:
        flags = self.task.evaluate_flags(self.budget)
        if self.device == "cpu":
            flags = merge_args(flags, {"--cpu": True})
        return [data_bin, "--user-dir", fairseq_cli.USER_DIR, "--path", checkpoint,
                "--gen-subset", subset, *render_args(flags)]

    def evaluate(self, checkpoint: str, data_bin: str, log_path: str) -> Dict:
        """Quality (and for seq2seq speed and output length) on the test set, the decoding
        state and the parameters; the hypotheses beside the log."""
        torch.set_num_threads(self.threads)
        evaluator = self.task.task.evaluator
        scores, generated = evaluator.run(self._args(data_bin, checkpoint, "test"), log_path)
        if generated is not None:
            with open(log_path[:-len(".log")] + ".hyp", "w", encoding="utf-8") as f:
                f.writelines(line + "\n" for line in generated.ordered(generated.hypotheses))
        return {**scores, **self.decoding_state(checkpoint, data_bin)}

    def decoding_state(self, checkpoint: str, data_bin: str) -> Dict:
        """The state size of a seq2seq model after the average test target length, of a
        language model after the generation timing's prompt and new tokens."""
        from .lm_timing import PROMPT_TOKENS
        from .state_size import SENTENCES, decoding_state

        budget = self.task.budgets[self.budget]
        at = (dict(sentences=SENTENCES) if self.task.task.paired
              else dict(target_tokens=PROMPT_TOKENS + budget.timing_new_tokens,
                        sentences=budget.timing_prompts))
        return decoding_state(checkpoint, data_bin, threads=self.threads, device=self.device, **at)

    def generation_timing(self, checkpoints: Dict[str, str], data_bin: str) -> Dict:
        """Greedy generation of the language models (name -> checkpoint), taking turns."""
        from .lm_timing import time_generation

        budget = self.task.budgets[self.budget]
        return time_generation(checkpoints, data_bin, budget.timing_prompts,
                               budget.timing_new_tokens, threads=self.threads,
                               device=self.device)

    def translate_training_split(self, checkpoint: str, data_bin: str, log_path: str
                                 ) -> generation.Generated:
        """The model's best hypothesis (sentencepiece pieces) for every training source, with the
        test's beam settings; ``seconds`` is the whole pass (loading included)."""
        torch.set_num_threads(self.threads)
        start = time.time()
        generated = generation.generate(self._args(data_bin, checkpoint, "train"), log_path)
        generated.seconds = time.time() - start
        return generated


def write_distilled_pieces(generated: generation.Generated, gold: str, out: str) -> int:
    """The training targets for distillation: line i of ``out`` is the hypothesis for sentence i,
    or the gold target of ``gold`` where generation skipped it (too long); returns how many
    gold lines were kept."""
    os.makedirs(os.path.dirname(out), exist_ok=True)
    kept = 0
    with open(gold, encoding="utf-8") as f, open(out, "w", encoding="utf-8") as g:
        for sentence, line in enumerate(f):
            pieces = generated.pieces.get(sentence)
            kept += pieces is None
            g.write((line.rstrip("\n") if pieces is None else pieces) + "\n")
    return kept
