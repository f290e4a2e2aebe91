"""Memsizer on a CUDA device against the float64 CPU reference: the layer in fp32 / fp16 / bf16,
the causal forms at long lengths, incremental decoding through beam reorders (the state stays on
the device), checkpoints moved between CPU and CUDA, and fairseq-train steps in fp32, --fp16,
--memory-efficient-fp16 and --bf16. Marked ``cuda``; skipped without a device
(``bash scripts/gpu_check.sh OUTDIR`` runs them first on a GPU machine)."""
import os

import pytest
import torch

from memsizer_fairseq.tools.toolkit import fairseq_cli
from memsizer_fairseq.ops.causal import chunk_causal_read, quadratic_causal_read
from memsizer_fairseq.tools.toolkit.toy_data import write_toy_translation
from builders import REL_TOL, module, relative_error, step_through
from fairseq_helpers import generate_command

pytestmark = [
    pytest.mark.cuda,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device"),
]
CUDA = torch.device("cuda")
DTYPES = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}
TOLERANCE = {torch.float32: 1e-5, **REL_TOL}


@pytest.mark.parametrize("dtype", list(DTYPES.values()), ids=list(DTYPES))
@pytest.mark.parametrize("role", ["causal", "self", "cross"])
def test_layer_forward_and_backward_match_the_cpu_float64_layer(dtype, role):
    reference = module(role)
    layer = module(role, dtype).to(CUDA)
    query = torch.randn(300, 3, 32, dtype=torch.float64)
    source = torch.randn(40, 3, 32, dtype=torch.float64) if role == "cross" else query
    want = reference(query, source, source)[0]
    got_query = query.to(CUDA, dtype).requires_grad_()
    got_source = source.to(CUDA, dtype) if role == "cross" else got_query
    got = layer(got_query, got_source, got_source)[0]
    assert relative_error(got.cpu(), want) <= TOLERANCE[dtype]
    got.float().square().mean().backward()
    assert torch.isfinite(got_query.grad.float()).all()
    assert all(torch.isfinite(p.grad.float()).all() for p in layer.parameters())


@pytest.mark.parametrize("length", [1024, 4096, 16384])
def test_chunked_and_quadratic_causal_reads_match_the_cpu_reference(length):
    torch.manual_seed(0)
    a = torch.softmax(torch.randn(2, length, 8, dtype=torch.float64), -1)
    l, r = torch.randn(2, length, 8, dtype=torch.float64), torch.randn(2, length, 16,
                                                                         dtype=torch.float64)
    want, _, _ = chunk_causal_read(a, l, r, None)
    for form in (chunk_causal_read, quadratic_causal_read):
        if form is quadratic_causal_read and length > 4096:
            continue  # T x T
        got, _, _ = form(a.to(CUDA, torch.float32), l.to(CUDA, torch.float32),
                         r.to(CUDA, torch.float32), None)
        assert relative_error(got.cpu(), want) <= 1e-4, form.__name__


@pytest.mark.parametrize("role", ["causal", "cross"])
def test_incremental_decoding_through_reorders_stays_on_the_device(role):
    layer = module(role, torch.float32).to(CUDA).eval()
    beams, sentences = 2, 3
    x = torch.randn(6, beams * sentences, 32, device=CUDA)
    source = torch.randn(7, sentences, 32, device=CUDA).repeat_interleave(beams, dim=1)
    state = {}
    with torch.no_grad():
        got = step_through(layer, x[:3].split(1), state, source if role == "cross" else None)
        order = torch.tensor([1, 1, 2, 3, 5, 4], device=CUDA)
        layer.reorder_incremental_state(state, order)
        for value in layer._get_input_buffer(state).values():  # (group sizes are scalars)
            assert value is None or value.dim() == 0 or value.device.type == CUDA.type
        history = torch.cat([x[:3, order], x[3:]])
        more = step_through(layer, x[3:].split(1), state,
                            source[:, order] if role == "cross" else None)
        if role == "causal":
            want = layer(history, history, history)[0][3:]
        else:
            want = layer(x[3:], source[:, order], source[:, order])[0]
    assert got.device.type == "cuda"
    torch.testing.assert_close(more, want, rtol=1e-4, atol=1e-5)


@pytest.fixture(scope="module")
def toy_data(tmp_path_factory):
    root = tmp_path_factory.mktemp("cuda")
    prefixes = write_toy_translation(str(root / "raw"), {"train": 800, "valid": 50, "test": 50})
    data = str(root / "bin")
    fairseq_cli.preprocess(data, prefixes["train"], prefixes["valid"], prefixes["test"])
    return root, data


@pytest.mark.parametrize("precision", [[], ["--fp16"], ["--memory-efficient-fp16"], ["--bf16"]],
                         ids=["fp32", "fp16", "memory-efficient-fp16", "bf16"])
def test_fairseq_train_steps_and_checkpoints_move_between_cpu_and_cuda(toy_data, precision):
    root, data = toy_data
    save = str(root / ("ckpt-" + (precision[0][2:] if precision else "fp32")))
    fairseq_cli.run_fairseq("train", [
        data, "--user-dir", fairseq_cli.USER_DIR, "--arch", "memsizer_transformer_tiny",
        "--optimizer", "adam", "--lr", "1e-3", "--max-tokens", "2048", "--max-update", "20",
        "--criterion", "label_smoothed_cross_entropy", "--save-dir", save,
        "--no-epoch-checkpoints", "--disable-validation", *precision])
    checkpoint = os.path.join(save, "checkpoint_last.pt")
    for device in (["--cpu"], []):  # trained on CUDA, decoded on the CPU and on CUDA
        result = generate_command(data, checkpoint, beam=4, extra=device)
        assert result.sentences == 50
