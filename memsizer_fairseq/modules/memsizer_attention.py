"""Memsizer attention (Zhang & Cai, EMNLP 2022) as a drop-in for fairseq's MultiheadAttention.

Plain PyTorch: no fairseq import. Tensors follow fairseq's layout, ``T x B x C``.

* keys are input-independent: ``Phi: d -> h*k`` gives per-head slot logits of the reading
  position; each head takes a softmax over its k slots and the h distributions are averaged into
  one slot distribution ``a(z)`` ("lightweight multi-head"); attention dropout acts on each
  head's distribution before the average, as in the authors' code;
* values: ``l_j = LN(W_l x_j)`` (``W_l: d_src -> k``), ``r_j = LN(W_r x_j)`` (``W_r: d_src -> d``);
* memory: ``M = n^(-1/2) sum_j l_j r_j^T`` over the non-pad source positions (non-causal) or over
  ``j <= t`` with ``n = t`` (causal); output ``y(z) = a(z) M`` with no output projection.

Incremental decoding keeps, per sentence and layer, a ``k x d`` running sum and a count
(causal) or the source memory ``M`` (cross-attention): constant in the decoded length. Beam
reorders that only move rows onto bitwise-identical memories (within one sentence's beams) leave
the source memory in place, and the beams of a sentence share one copy of it. Without autograd a
causal decoding step is one GEMM for the three projections (cached stacked weights; the
state_dict keeps the three ``nn.Linear``) and a few small kernels that update the running sum and
count in place and read them.
"""
import uuid
from typing import Dict, Optional, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .causal_read import (
    DEFAULT_BLOCK_SIZE,
    accumulation_dtype,
    causal_read,
    causal_step,
)

IncrementalState = Dict[str, Dict[str, Optional[Tensor]]]


def _check_positive(name: str, value, kind=int):
    if not isinstance(value, (int, float)) or value <= 0 or (kind is int and int(value) != value):
        raise ValueError(f"{name} must be a positive {kind.__name__}, got {value!r}")


def equal_runs(labels: Tensor) -> int:
    """``g`` when ``labels`` (``B``) is U runs of g equal values (each run differing from the
    next), else 1."""
    size = labels.numel()
    runs = int((labels[1:] != labels[:-1]).sum()) + 1 if size else 1
    if size % runs or size == runs:
        return 1
    grid = labels.view(runs, size // runs)
    return size // runs if torch.equal(grid, grid[:, :1].expand_as(grid)) else 1


def regroup(new_order: Tensor, rows: int) -> Tuple[Tensor, int]:
    """Rows that are groups of ``rows`` copies of one sentence (row b of sentence ``b // rows``),
    reordered by ``new_order``: the sentence of each new group, and the new group size (1 when
    the new rows do not come in runs of one sentence)."""
    sentences = torch.div(new_order, rows, rounding_mode="floor")
    new_rows = equal_runs(sentences)
    return sentences[::new_rows], new_rows


def repeated_sentences(source: Tensor, padding_mask: Optional[Tensor]) -> int:
    """``g`` when the batch of ``source`` (``S x B x d``) and ``padding_mask`` (``B x S``) is U
    runs of g bitwise-equal sentences (the beams of one sentence, as SequenceGenerator lays
    them out), else 1."""
    if source.size(1) < 2:
        return 1
    differs = (source[:, 1:] != source[:, :-1]).any(dim=2).any(dim=0)
    if padding_mask is not None:
        differs = differs | (padding_mask[1:] != padding_mask[:-1]).any(dim=1)
    labels = torch.cat([differs.new_zeros(1), differs]).long().cumsum(0)
    return equal_runs(labels)


def _parameters_of(module: nn.Module) -> Tuple[Tensor, Tensor]:
    """``(weight, bias)`` of a Linear or LayerNorm: from its parameter dictionary, or as
    attributes where they are not plain parameters (parametrized modules)."""
    params = module._parameters
    weight, bias = params.get("weight"), params.get("bias")
    if weight is None or bias is None:
        return module.weight, module.bias
    return weight, bias


class MemsizerAttention(nn.Module):
    """Memsizer attention in its three roles.

    ``causal_read_fn`` (None: choose by length) pins the causal training formulation; the
    benchmark sets it to compare the forms.

    Args:
        embed_dim: width ``d`` of the reading input and of the output.
        num_heads: number of slot distributions ``h`` averaged into one.
        num_slots: memory slots ``k``.
        kdim: width of the written input (the encoder's width for cross-attention).
        causal: position t reads only positions ``<= t`` (decoder / LM self-attention).
        self_attention / encoder_decoder_attention: fairseq's role flags; cross-attention
            computes the source memory once per sentence during incremental decoding.
        dropout: attention dropout on the slot distribution.
        q_init_scale / kv_init_scale: Xavier gain ``scale^(-1/2)`` for ``Phi`` / ``W_l, W_r``.
        read_init_gain: initial weight of the LayerNorm of ``r`` (1 in the paper). With the
            paper's initialisation ``a(z)`` is near-uniform and each ``l_j`` sums to zero over
            the slots, so the read ``a(z) M`` shrinks like ``1 / sqrt(k h)``; ``sqrt(k)`` makes
            its initial scale independent of the slot count.
    """

    causal_read_fn = None
    _fused_cache = None

    def __init__(
        self,
        embed_dim: int,
        num_heads: int,
        num_slots: int,
        kdim: Optional[int] = None,
        causal: bool = False,
        self_attention: bool = True,
        encoder_decoder_attention: bool = False,
        dropout: float = 0.0,
        q_init_scale: float = 1.0,
        kv_init_scale: float = 1.0,
        read_init_gain: float = 1.0,
        block_size: int = DEFAULT_BLOCK_SIZE,
        quadratic_max_len: Optional[int] = None,
    ):
        super().__init__()
        _check_positive("embed_dim", embed_dim)
        _check_positive("num_heads", num_heads)
        _check_positive("num_slots", num_slots)
        _check_positive("q_init_scale", q_init_scale, float)
        _check_positive("kv_init_scale", kv_init_scale, float)
        _check_positive("read_init_gain", read_init_gain, float)
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"dropout must lie in [0, 1), got {dropout!r}")
        if causal and not self_attention:
            raise ValueError("causal Memsizer attention must be self-attention")
        if self_attention == encoder_decoder_attention:
            raise ValueError("exactly one of self_attention / encoder_decoder_attention is needed")
        self.embed_dim = embed_dim
        self.kdim = kdim if kdim is not None else embed_dim
        self.num_heads = num_heads
        self.num_slots = num_slots
        self.causal = causal
        self.self_attention = self_attention
        self.encoder_decoder_attention = encoder_decoder_attention
        self.dropout = dropout
        self.q_init_scale = float(q_init_scale)
        self.kv_init_scale = float(kv_init_scale)
        self.read_init_gain = float(read_init_gain)
        self.block_size = block_size
        self.quadratic_max_len = quadratic_max_len

        self.q_proj = nn.Linear(embed_dim, num_heads * num_slots)  # Phi
        self.l_proj = nn.Linear(self.kdim, num_slots)  # W_l
        self.r_proj = nn.Linear(self.kdim, embed_dim)  # W_r
        self.l_norm = nn.LayerNorm(num_slots)
        self.r_norm = nn.LayerNorm(embed_dim)
        self._incremental_state_id = str(uuid.uuid4())
        self.reset_parameters()

    def reset_parameters(self):
        nn.init.xavier_uniform_(self.q_proj.weight, gain=self.q_init_scale ** -0.5)
        nn.init.xavier_uniform_(self.l_proj.weight, gain=self.kv_init_scale ** -0.5)
        nn.init.xavier_uniform_(self.r_proj.weight, gain=self.kv_init_scale ** -0.5)
        for linear in (self.q_proj, self.l_proj, self.r_proj):
            nn.init.zeros_(linear.bias)
        self.l_norm.reset_parameters()
        self.r_norm.reset_parameters()
        nn.init.constant_(self.r_norm.weight, self.read_init_gain)

    def train(self, mode: bool = True):
        self._fused_cache = None
        return super().train(mode)

    def extra_repr(self) -> str:
        role = "causal" if self.causal else ("self" if self.self_attention else "cross")
        return (
            f"role={role}, embed_dim={self.embed_dim}, kdim={self.kdim}, heads={self.num_heads}, "
            f"slots={self.num_slots}, dropout={self.dropout}"
        )

    # -- the three pieces of the layer -------------------------------------------------------

    def slot_distribution(self, query: Tensor) -> Tensor:
        """``a(z)``: mean over heads of the per-head slot softmax (each after dropout).
        ``T x B x k``."""
        return self._slot_probs(self.q_proj(query))

    def _head_probs(self, logits: Tensor) -> Tensor:
        """Each head's slot softmax, attention dropout applied per head before the heads are
        averaged (as in the authors' code): ``T x B x h x k``, accumulation dtype."""
        tgt_len, bsz, _ = logits.shape
        logits = logits.view(tgt_len, bsz, self.num_heads, self.num_slots)
        probs = F.softmax(logits.to(accumulation_dtype(logits.dtype)), dim=-1)
        return F.dropout(probs, p=self.dropout, training=self.training)

    def _slot_probs(self, logits: Tensor) -> Tensor:
        return self._head_probs(logits).mean(dim=2).to(logits.dtype)

    def _self_projections(self, x: Tensor) -> Tuple[Tensor, Tensor, Tensor]:
        """The slot logits ``Phi x``, ``l(x)`` and ``r(x)`` of self-attention.

        Without autograd in eval mode (decoding, validation) the three projections ``Phi``,
        ``W_l``, ``W_r`` run as one GEMM (:meth:`_fused_weights`); otherwise they run
        separately, so that gradients flow to each ``nn.Linear``.
        """
        if self._needs_autograd(x):
            logits, (l, r) = self.q_proj(x), self.write_values(x)
            return logits, l, r
        weight, bias = self._fused_weights()
        fused = F.linear(x, weight, bias)
        logits, l, r = fused.split(
            [self.num_heads * self.num_slots, self.num_slots, self.embed_dim], dim=-1
        )
        return logits, self.l_norm(l), self.r_norm(r)

    def _projection_parameters(self) -> Tuple[Tensor, ...]:
        """``Phi``, ``W_l``, ``W_r`` and their biases (plain dictionary lookups: the decoding
        step reads them at every call)."""
        modules = self._modules
        q_weight, q_bias = _parameters_of(modules["q_proj"])
        l_weight, l_bias = _parameters_of(modules["l_proj"])
        r_weight, r_bias = _parameters_of(modules["r_proj"])
        return q_weight, l_weight, r_weight, q_bias, l_bias, r_bias

    def _needs_autograd(self, x: Tensor) -> bool:
        """True in training mode (attention dropout) or when the output needs a graph."""
        if self.training:
            return True
        if not torch.is_grad_enabled():
            return False
        return x.requires_grad or any(p.requires_grad for p in self._projection_parameters())

    def _fused_weights(self) -> Tuple[Tensor, Tensor]:
        """``Phi``, ``W_l`` and ``W_r`` stacked into one ``(h k + k + d) x d_src`` weight, and
        their biases into one vector, so that the three projections are one GEMM.

        The stacked copy is cached until a parameter changes: in place (its version counter) or
        its memory (dtype, device, ``.data`` replaced: the cache keeps the tensors it was made
        from, so that new parameters cannot reuse their addresses), or the module is switched
        between train and eval (optimizers may write through ``.data``, which bumps no version).
        The state_dict keeps the three separate ``nn.Linear`` parameters.
        """
        params = q_w, l_w, r_w, q_b, l_b, r_b = self._projection_parameters()
        key = (q_w._version, l_w._version, r_w._version, q_b._version, l_b._version, r_b._version,
               q_w.data_ptr(), l_w.data_ptr(), r_w.data_ptr(),
               q_b.data_ptr(), l_b.data_ptr(), r_b.data_ptr())
        cache = self._fused_cache
        if cache is None or cache[0] != key:
            with torch.no_grad():
                # stored transposed (d_src x (h k + k + d), contiguous): the layout in which the
                # GEMM reads the weight fastest when few rows are projected (decoding)
                weight = torch.cat(params[:3]).t().contiguous().t()
                cache = self._fused_cache = (
                    key, weight, torch.cat(params[3:]), tuple(p.detach() for p in params),
                )
        return cache[1], cache[2]

    def write_values(self, source: Tensor) -> Tuple[Tensor, Tensor]:
        """``l = LN(W_l x)`` (``S x B x k``) and ``r = LN(W_r x)`` (``S x B x d``)."""
        return self.l_norm(self.l_proj(source)), self.r_norm(self.r_proj(source))

    def source_memory(self, source: Tensor, padding_mask: Optional[Tensor]) -> Tensor:
        """Non-causal memory ``M = n^(-1/2) sum_j l_j r_j^T`` (``B x k x d``, accumulation dtype).

        ``padding_mask``: ``B x S``, True at pads; ``n`` is each sentence's true length.
        """
        l, r = self.write_values(source)
        return self._memory_from_values(l, r, padding_mask)

    @staticmethod
    def _unpadded_slot_values(l: Tensor, padding_mask: Optional[Tensor],
                              dtype: torch.dtype) -> Tuple[Tensor, Tensor]:
        """``l`` (``S x B x k``) as ``B x S x k`` in ``dtype`` with pads zeroed, and each
        sentence's true length ``n`` (``B``)."""
        l = l.to(dtype).transpose(0, 1)
        if padding_mask is None:
            return l, torch.full((l.size(0),), l.size(1), dtype=dtype, device=l.device)
        keep = (~padding_mask.bool()).to(dtype)
        return l * keep.unsqueeze(-1), keep.sum(dim=1)

    @classmethod
    def _memory_from_values(cls, l: Tensor, r: Tensor, padding_mask: Optional[Tensor]) -> Tensor:
        acc = accumulation_dtype(r.dtype)
        l, lengths = cls._unpadded_slot_values(l, padding_mask, acc)
        r = r.to(acc).transpose(0, 1)  # B x S x d
        # An empty source (n = 0) has an all-zero memory; clamp only avoids 0 * inf.
        return torch.bmm(l.transpose(1, 2), r) * lengths.clamp(min=1).rsqrt().view(-1, 1, 1)

    @staticmethod
    def read(a: Tensor, memory: Tensor) -> Tensor:
        """``y(z) = a(z) M`` for every reading position: ``T x B x k`` by ``U x k x d``, where
        each memory serves g = B / U consecutive rows (U = B: one memory per row; U < B: the
        beams of a sentence sharing its source memory during decoding)."""
        length, bsz, slots = a.shape
        shared = memory.size(0)
        if bsz % shared:
            raise ValueError(f"cross-attention state holds {shared} memories for {bsz} rows; "
                             "reorder_incremental_state must see every change of the batch")
        grouped = a.transpose(0, 1).reshape(shared, (bsz // shared) * length, slots)
        y = torch.bmm(grouped.to(memory.dtype), memory).view(bsz, length, -1)
        return y.transpose(0, 1).to(a.dtype)

    # -- fairseq's attention interface -------------------------------------------------------

    def forward(
        self,
        query: Tensor,
        key: Optional[Tensor] = None,
        value: Optional[Tensor] = None,
        key_padding_mask: Optional[Tensor] = None,
        incremental_state: Optional[IncrementalState] = None,
        need_weights: bool = False,
        static_kv: bool = False,
        attn_mask: Optional[Tensor] = None,
        before_softmax: bool = False,
        need_head_weights: bool = False,
    ) -> Tuple[Tensor, Optional[Tensor]]:
        """Same call as fairseq's ``MultiheadAttention``; returns ``(T x B x d, weights)``.

        Non-causal Memsizer (cross- and encoder self-attention) returns, when ``need_weights``
        or ``need_head_weights`` asks, the implicit weights of its read ``y_t = sum_j w_tj r_j``,
        ``w_tj = n^(-1/2) a(z_t) . l_j`` (zero at pads; they need not be positive or sum to
        one): ``B x T x S``, or per head (``a`` replaced by head h's slot distribution, whose
        mean over heads is ``a``) ``h x B x T x S``, as fairseq lays out attention weights.
        During incremental decoding they are computed from the source passed at each step, so
        the cached state stays the ``k x d`` memory. Causal Memsizer returns no weights.
        ``attn_mask`` (the decoder's future mask) is ignored: causality is part of the causal
        formulation.
        """
        if before_softmax:
            raise NotImplementedError("Memsizer attention has no attention logits to return")
        if attn_mask is not None and not self.causal:
            raise NotImplementedError(
                "non-causal Memsizer attention cannot apply an arbitrary attn_mask"
            )
        if self.causal:
            if (incremental_state is not None and query.size(0) == 1
                    and not self._needs_autograd(query)):
                return self._decode_step(query, key_padding_mask, incremental_state), None
            return self._causal_forward(query, key_padding_mask, incremental_state), None
        weights = "heads" if need_head_weights else ("mean" if need_weights else None)
        return self._memory_forward(query, key, key_padding_mask, incremental_state, weights)

    def _memory_forward(
        self, query, key, key_padding_mask, incremental_state, weights: Optional[str]
    ) -> Tuple[Tensor, Optional[Tensor]]:
        if self.self_attention:
            logits, l, r = self._self_projections(query)
            heads = self._head_probs(logits)
            y = self.read(heads.mean(dim=2).to(logits.dtype),
                          self._memory_from_values(l, r, key_padding_mask))
            return y, self._read_weights(heads, l, key_padding_mask, weights, y.dtype)
        if key is None and incremental_state is None:
            raise ValueError("cross-attention needs the source (key)")
        logits = self.q_proj(query)
        heads = self._head_probs(logits)
        a = heads.mean(dim=2).to(logits.dtype)
        if weights is not None:
            if key is None:
                raise ValueError("cross-attention weights need the source (key) at every step")
            l = self.l_norm(self.l_proj(key))
            attn = self._read_weights(heads, l, key_padding_mask, weights, logits.dtype)
        else:
            attn = None
        if incremental_state is None:
            return self.read(a, self.source_memory(key, key_padding_mask)), attn
        saved = self._get_input_buffer(incremental_state)
        memory = saved.get("memory")
        if memory is None:
            if key is None:
                raise ValueError("cross-attention state is empty and no source was given")
            # one memory per sentence, computed from one copy of its source, shared by its beams
            rows = repeated_sentences(key, key_padding_mask)
            if rows > 1:
                key = key[:, ::rows]
                key_padding_mask = None if key_padding_mask is None else key_padding_mask[::rows]
            memory = self.source_memory(key, key_padding_mask)
            self._set_input_buffer(incremental_state, {
                "memory": memory, "rows_per_memory": torch.tensor(rows, dtype=torch.long),
            })
        return self.read(a, memory), attn

    @classmethod
    def _read_weights(cls, heads: Tensor, l: Tensor, padding_mask: Optional[Tensor],
                      weights: Optional[str], dtype: torch.dtype) -> Optional[Tensor]:
        """``w_tj = n^(-1/2) a(z_t) . l_j`` from the per-head slot distributions ``heads``
        (``T x B x h x k``) and ``l`` (``S x B x k``): ``B x T x S`` (``weights="mean"``) or
        ``h x B x T x S`` (``"heads"``); None when ``weights`` is None."""
        if weights is None:
            return None
        l, lengths = cls._unpadded_slot_values(l, padding_mask, heads.dtype)
        per_head = torch.einsum("tbhk,bsk->hbts", heads, l)
        per_head = per_head * lengths.clamp(min=1).rsqrt().view(1, -1, 1, 1)
        return (per_head if weights == "heads" else per_head.mean(dim=0)).to(dtype)

    def _causal_forward(self, x, key_padding_mask, incremental_state) -> Tensor:
        logits, l, r = self._self_projections(x)
        a = self._slot_probs(logits)
        a, l, r = a.transpose(0, 1), l.transpose(0, 1), r.transpose(0, 1)  # batch first
        keep = None if key_padding_mask is None else ~key_padding_mask.bool()
        if keep is not None and keep.size(1) != x.size(0):
            # fairseq may pass the mask of the whole prefix; the new positions are the last ones.
            keep = keep[:, -x.size(0):]
        if incremental_state is None:
            if self.causal_read_fn is not None:
                y, _, _ = self.causal_read_fn(a, l, r, keep)
            else:
                y, _, _ = causal_read(
                    a, l, r, keep, block_size=self.block_size,
                    quadratic_max_len=self.quadratic_max_len,
                )
            return y.transpose(0, 1)
        saved = self._get_input_buffer(incremental_state)
        prev_sum, prev_count = saved.get("sum"), saved.get("count")
        if prev_sum is None:
            prev_sum, prev_count = self._empty_state(x.size(1), r)
        if x.size(0) == 1:
            y, new_sum, new_count = causal_step(a, l, r, keep, prev_sum, prev_count)
        else:
            y, new_sum, new_count = causal_read(
                a, l, r, keep, prev_sum, prev_count, self.block_size, self.quadratic_max_len
            )
        self._set_input_buffer(incremental_state, {"sum": new_sum, "count": new_count})
        return y.transpose(0, 1)

    def _empty_state(self, bsz: int, like: Tensor) -> Tuple[Tensor, Tensor]:
        """The causal state before the first position: ``S_0 = 0`` (``B x k x d``), ``n_0 = 0``."""
        acc = accumulation_dtype(like.dtype)
        return (like.new_zeros(bsz, self.num_slots, self.embed_dim, dtype=acc),
                like.new_zeros(bsz, dtype=acc))

    def _decode_step(self, x: Tensor, key_padding_mask: Optional[Tensor],
                     incremental_state: IncrementalState) -> Tensor:
        """One causal decoding position without autograd (``x``: ``1 x B x d``).

        The step of :func:`causal_step`, ``S_t = S_{t-1} + l_t r_t^T`` and
        ``y_t = a_t S_t / sqrt(n_t)``, in as few kernels as it takes (at this size each costs
        more than its arithmetic): one GEMM for ``Phi``, ``W_l`` and ``W_r``; the two
        LayerNorms; the per-head softmax; the running sum and count updated in place; the mean
        over heads and ``n_t^(-1/2)`` as one ``(1 x h) (h x k)`` product per sentence; the read.
        The parameters are read directly: hooks on the projection and LayerNorm submodules do
        not run here (as in the fused projection of :meth:`_self_projections`).
        """
        heads, slots, dim = self.num_heads, self.num_slots, self.embed_dim
        bsz = x.size(1)
        weight, bias = self._fused_weights()
        modules = self._modules
        l_norm, r_norm = modules["l_norm"], modules["r_norm"]
        # batch first: B x 1 x (h k + k + d)
        logits, l, r = F.linear(x.transpose(0, 1), weight, bias).split(
            (heads * slots, slots, dim), dim=2)
        l = F.layer_norm(l, (slots,), *_parameters_of(l_norm), l_norm.eps)
        r = F.layer_norm(r, (dim,), *_parameters_of(r_norm), r_norm.eps)

        key = self._state_key()
        saved = incremental_state.get(key)
        state_sum = None if saved is None else saved.get("sum")
        if state_sum is None:
            state_sum, count = self._empty_state(bsz, r)
            saved = None
        else:
            count = saved["count"]
        acc = state_sum.dtype
        if r.dtype != acc:  # half types: the running sum is float32
            l, r, logits = l.to(acc), r.to(acc), logits.to(acc)
        if key_padding_mask is None:
            step = 1
        else:
            # fairseq may pass the mask of the whole prefix; the new position is the last one.
            step = (~key_padding_mask[:, -1:].bool()).to(acc)  # B x 1
            l = l * step.unsqueeze(2)  # a pad writes nothing and does not count
            step = step.view(bsz)
        # Tensors made under inference_mode cannot be updated in place outside it.
        if state_sum.is_inference() and not torch.is_inference_mode_enabled():
            state_sum = torch.baddbmm(state_sum, l.transpose(1, 2), r)
            count = count + step
            saved = None
        else:
            state_sum.baddbmm_(l.transpose(1, 2), r)
            count.add_(step)
        if saved is None:
            incremental_state[key] = {"sum": state_sum, "count": count}

        # a_t / sqrt(n_t) = sum_h softmax_h(Phi x_t) / (h sqrt(n_t)); n_t = 0 only in a row that
        # has read nothing but pads (S_t = 0 there).
        if key_padding_mask is not None:
            count = count.clamp(min=1)
        scale = (count.view(bsz, 1, 1) * float(heads * heads)).rsqrt_().expand(bsz, 1, heads)
        probs = torch.softmax(logits.view(bsz, heads, slots), dim=2)
        y = torch.bmm(torch.bmm(scale, probs), state_sum).transpose(0, 1)  # 1 x B x d
        return y if y.dtype == x.dtype else y.to(x.dtype)

    # -- incremental state, in fairseq's format (Dict[str, Dict[str, Optional[Tensor]]]) ------

    def _state_key(self) -> str:
        return f"{self._incremental_state_id}.memsizer_state"

    def _get_input_buffer(
        self, incremental_state: Optional[IncrementalState]
    ) -> Dict[str, Optional[Tensor]]:
        if incremental_state is None:
            return {}
        return incremental_state.get(self._state_key()) or {}

    def _set_input_buffer(
        self, incremental_state: IncrementalState, buffer: Dict[str, Optional[Tensor]]
    ) -> IncrementalState:
        incremental_state[self._state_key()] = buffer
        return incremental_state

    def reorder_incremental_state(
        self, incremental_state: IncrementalState, new_order: Tensor
    ) -> IncrementalState:
        """Select/permute sentences (batch first); ``new_order`` may be shorter than the batch."""
        saved = self._get_input_buffer(incremental_state)
        if saved.get("rows_per_memory") is not None:
            return self._reorder_shared(incremental_state, saved, new_order)
        if saved:
            reordered = {
                name: (None if value is None else value.index_select(0, new_order))
                for name, value in saved.items()
            }
            self._set_input_buffer(incremental_state, reordered)
        return incremental_state

    def _reorder_shared(
        self, incremental_state: IncrementalState, saved: Dict[str, Optional[Tensor]],
        new_order: Tensor,
    ) -> IncrementalState:
        """Cross-attention: row b reads memory ``b // g``. On the CPU, beam search only moves
        rows within a sentence's beams (nothing to copy) or drops whole sentences (copy the kept
        memories, one per sentence); any other order copies one memory per row. Finding which
        reads ``new_order`` on the host, so on an accelerator every row gets its memory gathered
        instead (``k x d`` per row and step, without a host synchronisation)."""
        memory = saved["memory"]
        rows = int(saved["rows_per_memory"])  # a CPU tensor: no synchronisation
        if not self.host_reads_orders(memory.device):
            memory = memory.index_select(0, torch.div(new_order, rows, rounding_mode="floor"))
            new_rows = 1
        else:
            wanted, new_rows = regroup(new_order, rows)
            if not (wanted.numel() == memory.size(0) and torch.equal(
                    wanted, torch.arange(memory.size(0), device=wanted.device))):
                memory = memory.index_select(0, wanted)
        self._set_input_buffer(incremental_state, {
            "memory": memory, "rows_per_memory": torch.tensor(new_rows, dtype=torch.long),
        })
        return incremental_state

    @staticmethod
    def host_reads_orders(device: torch.device) -> bool:
        """Whether beam reorders may read the order on the host to share memories (the CPU)."""
        return device.type == "cpu"

    def state_bytes(self, incremental_state: Optional[IncrementalState]) -> int:
        """Bytes this layer holds in ``incremental_state`` (for memory measurements)."""
        return sum(
            v.numel() * v.element_size()
            for v in self._get_input_buffer(incremental_state).values()
            if v is not None
        )
