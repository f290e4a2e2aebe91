#!/usr/bin/env bash
# The prepared GPU check: bash scripts/gpu_check.sh OUTDIR
#   1. the CUDA tests (tests/test_cuda.py: the layer in fp32/fp16/bf16 against the float64
#      reference, long causal reads, incremental decoding through reorders, fairseq-train in
#      fp32 / --fp16 / --memory-efficient-fp16 / --bf16, checkpoints between CPU and CUDA);
#   2. the benchmark on CUDA in fp16 and in bf16 (decoding step against prefix length, beam
#      search, training step up to 16k tokens for memsizer, transformer_lm, transformer_lm with
#      PyTorch's fused scaled_dot_product_attention, the authors' form and the network without
#      attention, peak memory, matrix-product FLOPs, each target beside its bounds):
#      OUTDIR/{fp16,bf16}/benchmark.{json,md} and PNGs;
# then prints a summary. About 8 minutes on one GPU. Without a CUDA device it says so and exits 0.
# Peak memory with each configuration in a fresh process is a separate, longer command:
#   python -m memsizer_fairseq.tools.benchmark.training_memory --device cuda --dtype bf16 ...
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
OUT="${1:?usage: bash scripts/gpu_check.sh OUTDIR}"
VENV="$(bash "$ROOT/scripts/setup_venv.sh")"
PY="$VENV/bin/python"
if ! "$PY" -c 'import sys, torch; sys.exit(0 if torch.cuda.is_available() else 1)'; then
    echo "gpu_check: no CUDA device (torch $("$PY" -c 'import torch; print(torch.__version__)')): nothing to check"
    exit 0
fi
mkdir -p "$OUT"
cd "$ROOT"
DEVICE="$("$PY" -c 'import torch; print(torch.cuda.get_device_name(0))')"
echo "gpu_check on $DEVICE" | tee "$OUT/summary.txt"
status=0
"$PY" -m pytest tests/test_cuda.py -q -p no:cacheprovider -m cuda 2>&1 | tee "$OUT/cuda_tests.txt" \
    || status=1
for dtype in fp16 bf16; do
    "$PY" -m memsizer_fairseq.tools.benchmark --device cuda --dtype "$dtype" --out "$OUT/$dtype" \
        --train-lengths 512,1024,2048,4096,8192,16384 2>&1 | tail -n 40 | tee "$OUT/$dtype.txt" \
        || status=1
done
{
    echo "CUDA tests: $(tail -n 1 "$OUT/cuda_tests.txt")"
    for dtype in fp16 bf16; do
        echo "benchmark $dtype: $OUT/$dtype/benchmark.md"
        grep -A9 "^### Targets" "$OUT/$dtype/benchmark.md" 2>/dev/null || true
    done
} | tee -a "$OUT/summary.txt"
exit $status
