"""Timing and memory measurements, one function per quantity the benchmark reports."""

import gc
import statistics
import time
from typing import Callable, Dict, List

import torch
from fairseq.sequence_generator import SequenceGenerator
from torch.utils import flop_counter


def synchronize(device: torch.device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _attention_flops(query, key, value, *args, out_shape=None, **kwargs) -> int:
    return flop_counter.sdpa_flop_count(query, key, value)


def _attention_backward_flops(grad_out, query, key, value, *args, out_shape=None, **kwargs):
    return flop_counter.sdpa_backward_flop_count(grad_out, query, key, value)


def counted_flops(fn: Callable[[], object]) -> int:
    """Floating-point operations of ``fn``'s matrix products (``mm``, ``addmm``, ``bmm``,
    ``baddbmm``, attention kernels; forward and backward), counted by PyTorch's
    ``FlopCounterMode``: elementwise work is left out, so it is the arithmetic that bounds a
    step where matrix products dominate. PyTorch's table leaves out the CPU kernels of
    ``scaled_dot_product_attention`` (which fairseq's attention calls); they count as its other
    kernels do (the whole score matrix, causal or not)."""
    aten = torch.ops.aten
    cpu_attention = {
        aten._scaled_dot_product_flash_attention_for_cpu: _attention_flops,
        aten._scaled_dot_product_flash_attention_for_cpu_backward: _attention_backward_flops,
    }
    with flop_counter.FlopCounterMode(display=False, custom_mapping=cpu_attention) as counter:
        fn()
    return counter.get_total_flops()


def timed(fn: Callable[[], object], device: torch.device,
          clock: Callable[[], float] = time.perf_counter) -> float:
    synchronize(device)
    start = clock()
    fn()
    synchronize(device)
    return clock() - start


def cpu_clock(device: torch.device) -> Callable[[], float]:
    """The clock of a one-thread measurement: on CPU the calling thread's CPU time (what other
    processes on the machine do not change), on CUDA the wall clock."""
    return time.thread_time if device.type == "cpu" else time.perf_counter


_cpu_baseline = {"rss": None}


def _proc_status_bytes(field: str):
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
    return None


def reset_peak(device: torch.device):
    """Start a peak-memory window: CUDA allocator stats, or Linux's resident-set high-water mark
    (on CPU, writing 5 to /proc/self/clear_refs resets the peak RSS (VmHWM) to the current RSS,
    so the peak of each measurement is read in-process; where that is not allowed, None)."""
    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)
        return
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        _cpu_baseline["rss"] = _proc_status_bytes("VmRSS")
    except OSError:
        _cpu_baseline["rss"] = None


def peak_bytes(device: torch.device):
    """Peak bytes allocated (GPU) or peak resident-set growth (CPU) since :func:`reset_peak`."""
    if device.type == "cuda":
        return int(torch.cuda.max_memory_allocated(device))
    baseline = _cpu_baseline["rss"]
    return None if baseline is None else max(0, _proc_status_bytes("VmHWM") - baseline)


def incremental_state_bytes(incremental_state: Dict) -> int:
    """All tensor bytes held in a fairseq incremental state (any model)."""
    return sum(value.numel() * value.element_size() for buffer in incremental_state.values()
               for value in (buffer or {}).values() if torch.is_tensor(value))


def _grow_state_to(incremental_state: Dict, prefix_len: int):
    """Give every buffer the size it has after ``prefix_len`` tokens (values are irrelevant).
    Softmax attention caches keys/values (``B x H x T x d_h``) and their padding mask; Memsizer
    keeps ``B x k x d`` sums and a count whatever ``T`` is. Building the state this way instead
    of decoding ``prefix_len`` tokens keeps long prefixes affordable."""
    for name, buffer in incremental_state.items():
        if not buffer:
            continue
        grown = {}
        for key, value in buffer.items():
            if torch.is_tensor(value) and key in ("prev_key", "prev_value"):
                shape = (*value.shape[:2], prefix_len, *value.shape[3:])
                value = torch.randn(shape, dtype=value.dtype, device=value.device)
            elif torch.is_tensor(value) and key == "count":
                value = torch.full_like(value, float(prefix_len))
            grown[key] = value
        incremental_state[name] = grown


def random_words(model, batch: int, length: int, device) -> torch.Tensor:
    """Random words (no special symbols) of the model's dictionary, ``batch x length``."""
    vocab = model.decoder.dictionary
    return torch.randint(vocab.nspecial, len(vocab), (batch, length), device=device)


@torch.no_grad()
def decode_step_time(model, prefix_len: int, batch: int, steps: int, device,
                     count_flops: bool = False) -> Dict:
    """Per-token time of incremental decoding after a ``prefix_len``-token prefix (LM decoder);
    ``count_flops`` also counts the matrix-product FLOPs of one more step, per token."""
    tokens = random_words(model, batch, prefix_len + steps + 2, device)
    state: Dict = {}
    model.decoder(tokens[:, :1], incremental_state=state)
    _grow_state_to(state, prefix_len)
    model.decoder(tokens[:, : prefix_len + 1], incremental_state=state)  # warm-up step
    reset_peak(device)

    def run():
        for s in range(steps):
            model.decoder(tokens[:, : prefix_len + 2 + s], incremental_state=state)

    seconds = timed(run, device)
    result = {"seconds_per_token": seconds / steps,
              "state_bytes_per_sentence": incremental_state_bytes(state) / batch,
              "peak_bytes": peak_bytes(device)}
    if count_flops:
        result["flops"] = counted_flops(lambda: model.decoder(
            tokens[:, : prefix_len + 2 + steps], incremental_state=state)) / batch
    return result


@torch.no_grad()
def beam_search_time(model, src_len: int, out_len: int, batch: int, beam: int, device,
                     with_state: bool = True, clock: Callable = time.perf_counter) -> Dict:
    """fairseq's SequenceGenerator producing exactly ``out_len`` tokens per sentence (every
    hypothesis: ``min_len`` = ``max_len_b``, EOS is suppressed until then); ``with_state`` also
    measures the decoding state (one more, untimed, generation); ``clock`` times it."""
    vocab = model.decoder.dictionary
    src = random_words(model, batch, src_len, device)
    src[:, -1] = vocab.eos()
    lengths = torch.full((batch,), src_len, device=device)
    sample = {"net_input": {"src_tokens": src, "src_lengths": lengths}}
    generator = SequenceGenerator([model], vocab, beam_size=beam, max_len_a=0, max_len_b=out_len,
                                  min_len=out_len)
    reset_peak(device)
    seconds = timed(lambda: generator.forward(sample), device, clock)
    result = {"seconds": seconds, "sentences_per_second": batch / seconds,
              "tokens_per_second": batch * out_len / seconds, "peak_bytes": peak_bytes(device)}
    if with_state:
        result["state_bytes_per_sentence"] = _largest_state_bytes(generator, sample) / batch
    return result


def _largest_state_bytes(generator: SequenceGenerator, sample: Dict) -> int:
    """The largest incremental state (all beams of the batch) seen by the decoder during one
    more ``generator.forward`` (untimed: the decoder is wrapped to look at its state)."""
    decoder = generator.model.single_model.decoder
    largest = [0]
    forward = decoder.forward

    def looking(*args, incremental_state=None, **kwargs):
        out = forward(*args, incremental_state=incremental_state, **kwargs)
        if incremental_state is not None:
            largest[0] = max(largest[0], incremental_state_bytes(incremental_state))
        return out

    decoder.forward = looking
    try:
        generator.forward(sample)
    finally:
        del decoder.forward
    return largest[0]


def lm_train_step(model, tokens: torch.Tensor, optimizer=None) -> torch.Tensor:
    """One training step of a language model on ``tokens`` (``B x (T + 1)``): forward on the
    first ``T``, cross-entropy against the next word over the vocabulary, backward, and the
    ``optimizer``'s update when one is given. Returns the (detached) loss."""
    logits, _ = model(tokens[:, :-1])
    loss = torch.nn.functional.cross_entropy(logits.float().view(-1, logits.size(-1)),
                                             tokens[:, 1:].reshape(-1))
    loss.backward()
    if optimizer is not None:
        optimizer.step()
    model.zero_grad(set_to_none=True)
    return loss.detach()


def train_step_time(model, seq_len: int, batch: int, device, count_flops: bool = False) -> Dict:
    """Forward and backward of a language model on ``batch x seq_len`` tokens; ``count_flops``
    also counts the step's matrix-product FLOPs (the warm-up step is the one counted)."""
    tokens = random_words(model, batch, seq_len + 1, device)
    model.train()
    result = {}
    if count_flops:
        result["flops"] = counted_flops(lambda: lm_train_step(model, tokens))
    else:
        lm_train_step(model, tokens)  # warm-up
    reset_peak(device)
    seconds = timed(lambda: lm_train_step(model, tokens), device)
    model.eval()
    return {**result, "seconds": seconds, "peak_bytes": peak_bytes(device)}


def summarize(samples: List[float]) -> Dict:
    """Minimum, median and spread ((max - min) / min) of repeated timings."""
    best = min(samples)
    return {"min": best, "median": statistics.median(samples),
            "spread": (max(samples) - best) / best if best > 0 else 0.0, "n": len(samples)}
