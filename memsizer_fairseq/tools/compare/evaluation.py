"""The test-set measurements of a trained model: its task's evaluator (fairseq-generate or
fairseq-eval-lm, read by the task's description), the decoding-state size, and for language
models the generation timing of every model together."""
import os
from dataclasses import dataclass
from typing import Dict

from ..toolkit import fairseq_cli
from ..toolkit.flags import merge_args, render_args
from .settings import TaskSettings


@dataclass(frozen=True)
class Evaluation:
    """Where and how a comparison measures: its task, data, threads and device."""

    task: TaskSettings
    tiny: bool
    data_bin: str
    logs: str
    threads: int
    device: str

    def evaluate(self, name: str, checkpoint: str) -> Dict:
        """Quality (and for seq2seq speed and output length) on the test set, and the state."""
        flags = self.task.evaluate_flags(self.tiny)
        if self.device == "cpu":
            flags = merge_args(flags, {"--cpu": True})
        args = [self.data_bin, "--user-dir", fairseq_cli.USER_DIR, "--path", checkpoint,
                "--gen-subset", "test", *render_args(flags)]
        log = os.path.join(self.logs, f"evaluate.{name}.log")
        evaluator = self.task.task.evaluator
        output = fairseq_cli.run_fairseq(evaluator.tool, args, log,
                                         env={"OMP_NUM_THREADS": str(self.threads)})
        try:
            scores = evaluator.read(output)
        except ValueError as error:
            raise RuntimeError(f"{error}: {log}") from None
        return {**scores, **self.decoding_state(checkpoint)}

    def decoding_state(self, checkpoint: str) -> Dict:
        """The state size of a seq2seq model after the average test target length, of a
        language model after the generation timing's prompt and new tokens."""
        from .lm_timing import PROMPT_TOKENS
        from .state_size import SENTENCES, decoding_state

        if self.task.task.paired:
            return decoding_state(checkpoint, self.data_bin, sentences=SENTENCES,
                                  threads=self.threads, device=self.device)
        budget = self.task.budget(self.tiny)
        return decoding_state(checkpoint, self.data_bin,
                              target_tokens=PROMPT_TOKENS + budget.timing_new_tokens,
                              sentences=budget.timing_prompts, threads=self.threads,
                              device=self.device)

    def generation_timing(self, checkpoints: Dict[str, str]) -> Dict:
        """Greedy generation of the language models, taking turns (name -> checkpoint)."""
        from .lm_timing import time_generation

        budget = self.task.budget(self.tiny)
        return time_generation(checkpoints, self.data_bin, budget.timing_prompts,
                               budget.timing_new_tokens, threads=self.threads,
                               device=self.device)
