"""The decoding state of a trained model, in bytes per sentence, measured by decoding; and
its decoding profile: step time and state against the output length.

Every tensor that fairseq's incremental decoding keeps between steps is counted (the
``incremental_state`` of all decoder layers): softmax self-attention's keys and values grow with
the output length, softmax cross-attention's with the source length, Memsizer's ``k x d`` sums
with neither. The encoder output is not part of it. A batch of test sentences is encoded and the
decoder run greedily, one step at a time, for ``target_tokens`` steps (by default the test
split's average target length); a language model is first fed its prompt, as the generation
timing does.
"""
import statistics
import time
from typing import Dict, Iterator, List, Optional, Sequence, Tuple

import torch

from ..benchmark.measure import incremental_state_bytes
from .lm_timing import PROMPT_TOKENS, _load, _prompts

SENTENCES = 16  # test sentences decoded together


@torch.no_grad()
def decoding_state(checkpoint: str, data_bin: str, target_tokens: Optional[int] = None,
                   sentences: int = SENTENCES, threads: int = 1, device: str = "cpu") -> Dict:
    """``state_bytes_per_sentence``, ``state_measured_at`` (sentences, padded source tokens
    or prompt tokens, decoder steps) and the ``parameters`` of a checkpoint."""
    torch.set_num_threads(threads)
    model, task = _load(checkpoint, data_bin, device)
    if getattr(model, "encoder", None) is not None:
        src_tokens, src_lengths, average_target = _source_batch(task, sentences, device)
        encoder_out = model.encoder(src_tokens, src_lengths=src_lengths)
        forced = src_tokens.new_empty((src_tokens.shape[0], 0))
        at = {"source_tokens": int(src_tokens.shape[1])}
        steps = target_tokens or average_target
    else:
        if target_tokens is None:
            raise ValueError("a language model's state is measured after a given number of "
                             "tokens: pass target_tokens")
        forced = _prompts(task, sentences, PROMPT_TOKENS).to(device)
        encoder_out, steps = None, target_tokens
        at = {"prompt_tokens": int(forced.shape[1])}
    state: Dict = {}
    for _, state, _ in _greedy_steps(model, encoder_out, forced, steps):
        pass
    batch = forced.shape[0]
    return {"state_bytes_per_sentence": incremental_state_bytes(state) / batch,
            "state_measured_at": dict(at, sentences=int(batch), target_tokens=int(steps)),
            "parameters": sum(p.numel() for p in model.parameters())}


@torch.no_grad()
def decoding_profile(checkpoint: str, data_bin: str, lengths: Sequence[int],
                     sentences: int = SENTENCES, threads: int = 1,
                     device: str = "cpu") -> List[Dict]:
    """Greedy incremental decoding of the first test sentences of a sequence-to-sequence
    checkpoint up to ``max(lengths)`` output tokens; for each length, the state per sentence
    after that many steps and the median time of the steps since the previous length (the
    time of one decoder step at about that output length)."""
    torch.set_num_threads(threads)
    model, task = _load(checkpoint, data_bin, device)
    src_tokens, src_lengths, _ = _source_batch(task, sentences, device)
    encoder_out = model.encoder(src_tokens, src_lengths=src_lengths)
    wanted = sorted(set(lengths))
    rows, times = [], []
    no_forcing = src_tokens.new_empty((src_tokens.shape[0], 0))
    for step, state, seconds in _greedy_steps(model, encoder_out, no_forcing, wanted[-1]):
        times.append(seconds)
        if step in wanted:
            rows.append({"output_tokens": step,
                         "step_seconds": statistics.median(times),
                         "state_bytes_per_sentence":
                             incremental_state_bytes(state) / src_tokens.shape[0]})
            times = []
    return rows


def _source_batch(task, sentences: int, device: str):
    """The first test sentences (padded as fairseq batches them) and the test split's average
    target length in tokens (end of sentence included)."""
    task.load_dataset("test")
    dataset = task.dataset("test")
    batch = dataset.collater([dataset[i] for i in range(min(sentences, len(dataset)))])
    net_input = batch["net_input"]
    average_target = max(1, round(statistics.fmean(int(n) for n in dataset.tgt_sizes)))
    return net_input["src_tokens"].to(device), net_input["src_lengths"].to(device), average_target


def _greedy_steps(model, encoder_out, forced: torch.Tensor, steps: int
                  ) -> Iterator[Tuple[int, Dict, float]]:
    """Greedy incremental decoding for ``steps`` steps from end-of-sentence (fairseq's start
    symbol), the first outputs forced to ``forced``; yields after each step its number (from
    1), the incremental state and the decoder call's seconds."""
    start = model.decoder.dictionary.eos()
    tokens = torch.full((forced.shape[0], 1), start, dtype=torch.long, device=forced.device)
    state: Dict = {}
    for step in range(steps):
        began = time.perf_counter()
        logits, _ = model.decoder(tokens, encoder_out=encoder_out, incremental_state=state)
        seconds = time.perf_counter() - began
        chosen = forced[:, step] if step < forced.shape[1] else logits[:, -1].argmax(-1)
        tokens = torch.cat([tokens, chosen.unsqueeze(1)], dim=1)
        yield step + 1, state, seconds
