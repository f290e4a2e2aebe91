"""Side-by-side generation time of language models: greedy continuation of test-set prompts.

Each model continues the same prompts (the first ``prompt_tokens`` tokens of the first
``prompts`` test blocks that hold no document end) by exactly ``new_tokens`` tokens (EOS is
blocked until then), with fairseq's ``SequenceGenerator`` and incremental decoding, as
``fairseq-interactive`` runs it. Any number of models take turns, ``rounds`` times; the median
time per model is reported, with the sentences (continuations) and new tokens per second.
"""
import statistics
import time
from typing import Dict

import torch

PROMPT_TOKENS = 16


def _load(checkpoint: str, data_bin: str, device: str):
    from fairseq import checkpoint_utils

    models, _cfg, task = checkpoint_utils.load_model_ensemble_and_task(
        [checkpoint], arg_overrides={"data": data_bin})
    model = models[0].to(device).eval()
    return model, task


def _prompts(task, count: int, length: int) -> torch.Tensor:
    task.load_dataset("test")
    dataset = task.dataset("test")
    special = {task.target_dictionary.eos(), task.target_dictionary.pad()}
    rows = []
    for index in range(len(dataset)):
        tokens = dataset[index]["source"][:length]
        # a prompt that ends a document (EOS) would end its continuation there
        if tokens.numel() == length and not any(int(t) in special for t in tokens):
            rows.append(tokens)
        if len(rows) == count:
            break
    if not rows:
        raise ValueError(f"no test block has {length} tokens to use as a prompt")
    return torch.stack(rows)


def time_generation(checkpoints: Dict[str, str], data_bin: str, prompts: int, new_tokens: int,
                    prompt_tokens: int = PROMPT_TOKENS, rounds: int = 3, threads: int = 1,
                    device: str = "cpu") -> Dict:
    from fairseq.sequence_generator import SequenceGenerator

    torch.set_num_threads(threads)
    loaded = {name: _load(path, data_bin, device) for name, path in checkpoints.items()}
    first_task = next(iter(loaded.values()))[1]
    prompt = _prompts(first_task, prompts, prompt_tokens).to(device)
    total = prompt.shape[1] + new_tokens
    sample = {"net_input": {"src_tokens": prompt,
                            "src_lengths": torch.full((prompt.shape[0],), prompt.shape[1])}}
    seconds: Dict[str, list] = {name: [] for name in loaded}
    for round_index in range(rounds + 1):  # round 0 warms up
        for name, (model, task) in loaded.items():
            generator = SequenceGenerator([model], task.target_dictionary, beam_size=1,
                                          max_len_a=0, max_len_b=total, min_len=total)
            if device != "cpu":
                torch.cuda.synchronize()
            start = time.perf_counter()
            output = generator.generate([model], sample, prefix_tokens=prompt)
            if device != "cpu":
                torch.cuda.synchronize()
            elapsed = time.perf_counter() - start
            lengths = {len(hypos[0]["tokens"]) for hypos in output}
            if lengths != {total + 1}:  # the prompt, the new tokens and EOS
                raise RuntimeError(f"{name}: generated lengths {sorted(lengths)}, not {total + 1}")
            if round_index:
                seconds[name].append(elapsed)
    medians = {name: statistics.median(times) for name, times in seconds.items()}
    count = int(prompt.shape[0])
    return {
        "prompts": count, "prompt_tokens": int(prompt.shape[1]),
        "new_tokens": new_tokens, "rounds": rounds, "threads": threads, "seconds": medians,
        "sentences_per_second": {name: count / s for name, s in medians.items()},
        "tokens_per_second": {name: count * new_tokens / s for name, s in medians.items()},
    }
