"""Slow, obviously-correct Memsizer, written straight from the equations (per-position loops).

Uses the parameters of a :class:`MemsizerAttention` so that outputs and gradients can be compared.
"""
import torch
import torch.nn.functional as F


def slot_distribution(module, x_t):
    """a(z): mean over heads of softmax over the k slots of Phi z (one position, one sentence)."""
    logits = module.q_proj(x_t).view(module.num_heads, module.proj_dim)
    return torch.stack([F.softmax(logits[h], dim=-1) for h in range(module.num_heads)]).mean(0)


def reference_attention(module, query, source=None, query_pad=None, source_pad=None,
                        slot_probs=None):
    """Output ``T x B x d`` of Memsizer for query ``T x B x d``.

    Causal modules read ``M_t = t^(-1/2) sum_{j<=t, j not pad} l_j r_j^T`` with t the number of
    non-pad positions so far; others read ``M = n^(-1/2) sum_{j not pad} l_j r_j^T`` over the
    source (the query itself for self-attention). ``slot_probs`` (``T x B x k``) replaces a(z)
    (to reproduce dropout).
    """
    causal = module.causal
    if source is None:
        source = query
    tgt_len, bsz, _ = query.shape
    outputs = []
    for b in range(bsz):
        rows = []
        for t in range(tgt_len):
            if slot_probs is not None:
                a = slot_probs[t, b]
            else:
                a = slot_distribution(module, query[t, b])
            if causal:
                positions = [j for j in range(t + 1) if query_pad is None or not query_pad[b, j]]
            else:
                positions = [
                    j for j in range(source.size(0)) if source_pad is None or not source_pad[b, j]
                ]
            memory = torch.zeros(module.proj_dim, module.embed_dim, dtype=query.dtype)
            for j in positions:
                l_j = module.l_norm(module.l_proj(source[j, b]))
                r_j = module.r_norm(module.r_proj(source[j, b]))
                memory = memory + torch.outer(l_j, r_j)
            if positions:
                memory = memory / len(positions) ** 0.5
            rows.append(a @ memory)
        outputs.append(torch.stack(rows))
    return torch.stack(outputs, dim=1)


def reference_read_weights(module, query, source=None, source_pad=None):
    """Per-head implicit weights ``h x B x T x S`` of a non-causal Memsizer read:
    ``w^h_tj = n^(-1/2) softmax_h(Phi z_t) . l_j`` over the non-pad source positions (0 at
    pads), so that ``y_t = sum_j mean_h(w^h_tj) r_j``."""
    if source is None:
        source = query
    tgt_len, bsz, _ = query.shape
    weights = torch.zeros(module.num_heads, bsz, tgt_len, source.size(0), dtype=query.dtype)
    for b in range(bsz):
        positions = [j for j in range(source.size(0)) if source_pad is None or not source_pad[b, j]]
        for t in range(tgt_len):
            logits = module.q_proj(query[t, b]).view(module.num_heads, module.proj_dim)
            for h in range(module.num_heads):
                a_h = F.softmax(logits[h], dim=-1)
                for j in positions:
                    l_j = module.l_norm(module.l_proj(source[j, b]))
                    weights[h, b, t, j] = (a_h @ l_j) / len(positions) ** 0.5
    return weights


def assert_gradients_match(out, ref, inputs, module, **tolerance):
    """``out`` and the reference output ``ref`` have the same gradients with respect to
    ``inputs`` and ``module``'s parameters (under one random weighting of the outputs); where
    the reference has none (an unused parameter), ``out``'s is absent or zero."""
    weights = torch.randn_like(out)
    wrt = list(inputs) + list(module.parameters())
    grads = torch.autograd.grad((out * weights).sum(), wrt, allow_unused=True)
    want = torch.autograd.grad((ref * weights).sum(), wrt, allow_unused=True)
    for got, expected in zip(grads, want):
        if expected is None:
            assert got is None or torch.count_nonzero(got) == 0
        else:
            torch.testing.assert_close(got, expected, **tolerance)
