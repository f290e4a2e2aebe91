#!/usr/bin/env bash
# The prepared GPU check: bash scripts/gpu_check.sh OUTDIR
#   1. the CUDA tests (tests/test_cuda.py -m cuda: the layer in fp32/fp16/bf16 against the
#      float64 reference, long causal reads, incremental decoding through reorders, fairseq-train
#      in fp32 / --fp16 / --memory-efficient-fp16 / --bf16, checkpoints between CPU and CUDA);
#   2. the Triton tests on the GPU (tests/ops/test_fla_forms.py -m triton, without Triton's
#      interpreter: flash-linear-attention's chunked and recurrent kernels against the naive read);
#   3. the benchmark on CUDA in fp16 and in bf16 (decoding step against prefix length, beam
#      search, training step at 512..16384 tokens for memsizer with its PyTorch forms and with
#      flash-linear-attention's kernels (memsizer-fla), transformer_lm, transformer_lm with
#      PyTorch's fused scaled_dot_product_attention, the authors' form and the network without
#      attention, peak memory, matrix-product FLOPs, each target beside its bounds):
#      OUTDIR/{fp16,bf16}/benchmark.{json,md} and PNGs;
# then prints a summary naming the card (OUTDIR/summary.txt). Every step runs under its own
# timeout (the whole stays within about 8 minutes on one GPU); a step that fails or runs out of
# time is named in the summary and the script exits 1. Without a CUDA device it says so and
# exits 0.
# GPU_CHECK_PYTHON=/path/to/python uses that interpreter as it is (no scripts/setup_venv.sh);
# GPU_CHECK_{CUDA_TESTS,TRITON_TESTS,BENCHMARK}_S change the steps' timeouts (seconds).
# Peak memory with each configuration in a fresh process is a separate, longer command:
#   python -m memsizer_fairseq.tools.benchmark.training_memory --device cuda --dtype bf16 ...
set -uo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
OUT="${1:?usage: bash scripts/gpu_check.sh OUTDIR}"
if [ -n "${GPU_CHECK_PYTHON:-}" ]; then
    PY="$GPU_CHECK_PYTHON"
else
    VENV="$(bash "$ROOT/scripts/setup_venv.sh")" || { echo "gpu_check: setup_venv.sh failed"; exit 1; }
    PY="$VENV/bin/python"
fi
if ! "$PY" -c 'import sys, torch; sys.exit(0 if torch.cuda.is_available() else 1)'; then
    echo "gpu_check: no CUDA device (torch $("$PY" -c 'import torch; print(torch.__version__)')): nothing to check"
    exit 0
fi
mkdir -p "$OUT"
OUT="$(cd "$OUT" && pwd)"
cd "$ROOT"
# seconds per step; their sum (8 minutes) bounds the whole
CUDA_TESTS_S="${GPU_CHECK_CUDA_TESTS_S:-120}"
TRITON_TESTS_S="${GPU_CHECK_TRITON_TESTS_S:-60}"
BENCHMARK_S="${GPU_CHECK_BENCHMARK_S:-150}"
DEVICE="$("$PY" -c 'import torch; print(torch.cuda.get_device_name(0))')"
echo "gpu_check on $DEVICE ($(date -u +%FT%TZ))" | tee "$OUT/summary.txt"
STEPS=()
status=0

# step NAME SECONDS LOG COMMAND...: runs COMMAND under `timeout`, its output into LOG (and its
# last lines onto the terminal), and records "NAME: ok | FAILED (exit N) | TIMED OUT after S s"
step() {
    local name="$1" seconds="$2" log="$3"
    shift 3
    echo "== $name (at most ${seconds} s)"
    local start=$SECONDS rc
    timeout -k 10 "$seconds" "$@" >"$log" 2>&1
    rc=$?
    tail -n 15 "$log"
    local took=$((SECONDS - start))
    if [ "$rc" -eq 0 ]; then
        STEPS+=("$name: ok (${took} s)")
    elif [ "$rc" -eq 124 ] || [ "$rc" -eq 137 ]; then
        STEPS+=("$name: TIMED OUT after ${seconds} s (log: $log)")
        status=1
    else
        STEPS+=("$name: FAILED (exit $rc, ${took} s; log: $log)")
        status=1
    fi
}

step "CUDA tests" "$CUDA_TESTS_S" "$OUT/cuda_tests.txt" \
    "$PY" -m pytest tests/test_cuda.py -q -p no:cacheprovider -m cuda
# on the GPU: Triton's interpreter off (tests/conftest.py chooses it only without CUDA), and
# fp32 tl.dot in IEEE fp32 (Triton's default on Ampere and later is TF32, a 10-bit mantissa), so
# that the fp32 kernels meet the interpreter's tolerance against the float64 reference
step "Triton tests (fla kernels on the GPU)" "$TRITON_TESTS_S" "$OUT/triton_tests.txt" \
    env -u TRITON_INTERPRET TRITON_F32_DEFAULT=ieee "$PY" -m pytest tests/ops/test_fla_forms.py \
    -q -p no:cacheprovider -m triton
for dtype in fp16 bf16; do
    step "benchmark $dtype" "$BENCHMARK_S" "$OUT/$dtype.txt" \
        "$PY" -m memsizer_fairseq.tools.benchmark --device cuda --dtype "$dtype" \
        --out "$OUT/$dtype" --sections decode,beam,train --repeats 2 \
        --prefix-lengths 16,256,1024,4096 --out-lengths 20,100 --beam-batches 1,8 \
        --train-lengths 512,1024,2048,4096,8192,16384
done
{
    echo
    echo "gpu_check summary: $DEVICE, torch $("$PY" -c 'import torch; print(torch.__version__, torch.version.cuda)')"
    for line in "${STEPS[@]}"; do echo "  $line"; done
    echo "  CUDA tests: $(tail -n 1 "$OUT/cuda_tests.txt" 2>/dev/null)"
    echo "  Triton tests: $(tail -n 1 "$OUT/triton_tests.txt" 2>/dev/null)"
    for dtype in fp16 bf16; do
        md="$OUT/$dtype/benchmark.md"
        if [ -f "$md" ]; then
            echo
            echo "benchmark $dtype: $md"
            grep "^Note:" "$md" || true
            grep -A12 "^### Training step" "$md" | grep "^|" || true
            grep -A12 "^### Targets" "$md" | grep "^|" || true
        else
            echo "benchmark $dtype: no report (see $OUT/$dtype.txt)"
        fi
    done
    [ "$status" -eq 0 ] && echo "gpu_check: every step passed" || echo "gpu_check: a step FAILED (above)"
} | tee -a "$OUT/summary.txt"
exit $status
