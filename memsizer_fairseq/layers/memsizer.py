"""The Memsizer layer (Zhang & Cai, EMNLP 2022): its parameters, and the reads of :mod:`..ops`
composed with them. Plain PyTorch, batch-first (``B x T x d``), no fairseq import.

* keys are input-independent: ``Phi: d -> h*k`` gives per-head slot logits of the reading
  position; each head takes a softmax over its k slots and the h distributions are averaged into
  one slot distribution ``a(z)`` ("lightweight multi-head"); attention dropout acts on each
  head's distribution before the average, as in the authors' code;
* values: ``l_j = LN(W_l x_j)`` (``W_l: d_src -> k``), ``r_j = LN(W_r x_j)`` (``W_r: d_src -> d``);
* memory ``M = n^(-1/2) sum_j l_j r_j^T`` over the real source positions (roles ``self`` and
  ``cross``) or over ``j <= t`` with ``n = t`` (role ``causal``); output ``y(z) = a(z) M``, no
  output projection;
* (beyond the paper, off by default) a causal short convolution over the input of the causal
  role (``causal_short_conv`` taps), starting as the identity.

The causal state (for incremental decoding) is a dict of batch-first tensors: the unscaled
running sum ``sum`` (``B x k x d``), the count ``count`` (``B``) and, with the short convolution,
the last ``K - 1`` inputs ``inputs`` (``B x (K-1) x d``): constant in the decoded length.
"""
from typing import Dict, Optional, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..ops.causal import (
    DEFAULT_BLOCK_SIZE,
    FLA_FORMS,
    FORM_CHOICES,
    causal_read,
    causal_step,
    empty_state,
    fla_causal_step,
    fused_causal_step,
)
from ..ops.common import accumulation_dtype, check_positive
from ..ops.memory import read_memory, read_weights, source_memory
from ..ops.short_conv import short_conv
from .stacked_projections import StackedProjections, parameters_of

ROLES = ("causal", "self", "cross")
CausalState = Dict[str, Tensor]


class MemsizerLayer(nn.Module):
    """Memsizer attention in one of three roles: ``causal`` (decoder / LM self-attention),
    ``self`` (encoder self-attention) or ``cross`` (cross-attention, reading a source of width
    ``kdim``).

    The arguments are named as the flags of :class:`~memsizer_fairseq.config.MemsizerConfig`;
    ``proj_dim`` is this layer's slot count k (``--causal-proj-dim``, ``--encoder-proj-dim`` or
    ``--cross-proj-dim`` by its role). ``q_init_scale`` / ``kv_init_scale``: Xavier gain
    ``scale^(-1/2)`` of ``Phi`` / ``W_l, W_r``. ``read_init_gain``: initial weight of the
    LayerNorm of ``r`` (1 in the paper). ``causal_form``: the form of the causal read in
    training and prefill (a key of :data:`~memsizer_fairseq.ops.causal.CAUSAL_FORMS`, or
    ``auto``), ``causal_block_size`` that of the chunked form.
    """

    def __init__(self, embed_dim: int, num_heads: int, proj_dim: int, *, role: str,
                 q_init_scale: float, kv_init_scale: float, kdim: Optional[int] = None,
                 dropout: float = 0.0, read_init_gain: float = 1.0, causal_short_conv: int = 0,
                 causal_form: str = "auto", causal_block_size: int = DEFAULT_BLOCK_SIZE):
        super().__init__()
        if role not in ROLES:
            raise ValueError(f"role must be one of {', '.join(ROLES)}, got {role!r}")
        for name, value, kind in (
                ("embed_dim", embed_dim, int), ("num_heads", num_heads, int),
                ("proj_dim", proj_dim, int), ("q_init_scale", q_init_scale, float),
                ("kv_init_scale", kv_init_scale, float), ("read_init_gain", read_init_gain, float),
                ("causal_block_size", causal_block_size, int)):
            check_positive(name, value, kind)
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"dropout must lie in [0, 1), got {dropout!r}")
        if causal_short_conv and role != "causal":
            raise ValueError("the short convolution (causal_short_conv) is for causal "
                             "self-attention only")
        if causal_short_conv and int(causal_short_conv) < 2:
            raise ValueError(f"--causal-short-conv must be at least 2 taps, got "
                             f"{causal_short_conv!r}")
        if causal_form not in FORM_CHOICES:
            raise ValueError(f"causal_form must be one of {', '.join(FORM_CHOICES)}, got "
                             f"{causal_form!r}")
        self.role = role
        self.embed_dim = embed_dim
        self.kdim = kdim if kdim is not None else embed_dim
        self.num_heads = num_heads
        self.proj_dim = proj_dim
        self.dropout = dropout
        self.q_init_scale = float(q_init_scale)
        self.kv_init_scale = float(kv_init_scale)
        self.read_init_gain = float(read_init_gain)
        self.causal_form = causal_form
        self.causal_block_size = causal_block_size

        self.q_proj = nn.Linear(embed_dim, num_heads * proj_dim)  # Phi
        self.l_proj = nn.Linear(self.kdim, proj_dim)  # W_l
        self.r_proj = nn.Linear(self.kdim, embed_dim)  # W_r
        self.l_norm = nn.LayerNorm(proj_dim)
        self.r_norm = nn.LayerNorm(embed_dim)
        self.reset_parameters()
        self.causal_short_conv = int(causal_short_conv)
        if self.causal_short_conv:
            # d x K taps; tap i multiplies x_{t-i}; the identity at the start (the paper's layer)
            self.short_conv = nn.Parameter(torch.zeros(embed_dim, self.causal_short_conv))
            with torch.no_grad():
                self.short_conv[:, 0] = 1.0
        else:
            self.register_parameter("short_conv", None)
        self._stacked = StackedProjections()

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
        self._stacked.clear()
        return super().train(mode)

    def extra_repr(self) -> str:
        conv = f", causal_short_conv={self.causal_short_conv}" if self.causal_short_conv else ""
        return (f"role={self.role}, embed_dim={self.embed_dim}, kdim={self.kdim}, "
                f"heads={self.num_heads}, proj_dim={self.proj_dim}, dropout={self.dropout}{conv}")

    # -- the pieces ------------------------------------------------------------------------------

    def head_probs(self, logits: Tensor) -> Tensor:
        """Each head's slot softmax of the slot logits ``Phi x`` (``B x T x h k``), attention
        dropout applied per head before the heads are averaged (as in the authors' code):
        ``B x T x h x k`` in the accumulation dtype."""
        bsz, length, _ = logits.shape
        logits = logits.view(bsz, length, self.num_heads, self.proj_dim)
        probs = F.softmax(logits.to(accumulation_dtype(logits.dtype)), dim=-1)
        return F.dropout(probs, p=self.dropout, training=self.training)

    def slot_distribution(self, x: Tensor) -> Tensor:
        """``a(z)`` (``B x T x k``): the mean over heads of the per-head slot softmax."""
        logits = self.q_proj(x)
        return self.head_probs(logits).mean(dim=2).to(logits.dtype)

    def write_values(self, source: Tensor) -> Tuple[Tensor, Tensor]:
        """``l = LN(W_l x)`` (``B x S x k``) and ``r = LN(W_r x)`` (``B x S x d``)."""
        return self.l_norm(self.l_proj(source)), self.r_norm(self.r_proj(source))

    def memory(self, source: Tensor, keep: Optional[Tensor] = None) -> Tensor:
        """The source memory ``M`` (``B x k x d``, accumulation dtype); keep: ``B x S``."""
        return source_memory(*self.write_values(source), keep)

    def needs_autograd(self, x: Tensor) -> bool:
        """True in training mode (attention dropout) or when the output needs a graph."""
        if self.training:
            return True
        if not torch.is_grad_enabled():
            return False
        return x.requires_grad or any(p.requires_grad for p in self.projection_parameters())

    def projection_parameters(self) -> Tuple[Tensor, ...]:
        """``Phi``, ``W_l``, ``W_r`` and their biases."""
        modules = self._modules
        q_weight, q_bias = parameters_of(modules["q_proj"])
        l_weight, l_bias = parameters_of(modules["l_proj"])
        r_weight, r_bias = parameters_of(modules["r_proj"])
        return q_weight, l_weight, r_weight, q_bias, l_bias, r_bias

    def self_projections(self, x: Tensor) -> Tuple[Tensor, Tensor, Tensor]:
        """The slot logits ``Phi x``, ``l(x)`` and ``r(x)`` of self-attention: without autograd
        one GEMM on the stacked weights, otherwise each ``nn.Linear`` (for their gradients)."""
        if self.needs_autograd(x):
            return (self.q_proj(x), *self.write_values(x))
        weight, bias = self._stacked.weights(self.projection_parameters())
        logits, l, r = F.linear(x, weight, bias).split(
            [self.num_heads * self.proj_dim, self.proj_dim, self.embed_dim], dim=-1)
        return logits, self.l_norm(l), self.r_norm(r)

    # -- the three roles -------------------------------------------------------------------------

    def forward(self, x: Tensor, source: Optional[Tensor] = None, keep: Optional[Tensor] = None,
                source_keep: Optional[Tensor] = None) -> Tensor:
        """The full pass, ``B x T x d``: causal or encoder self-attention over ``x`` (keep:
        ``B x T``, True at real positions), or cross-attention of ``x`` over ``source``
        (``B x S x kdim``, source_keep ``B x S``)."""
        if self.role == "causal":
            return self.attend_causal(x, keep)[0]
        if self.role == "self":
            return self.attend_self(x, keep)[0]
        heads = self.head_probs(self.q_proj(x))
        return read_memory(heads.mean(dim=2).to(x.dtype), self.memory(source, source_keep))

    def attend_self(self, x: Tensor, keep: Optional[Tensor] = None, weights: bool = False
                  ) -> Tuple[Tensor, Optional[Tensor]]:
        """Encoder self-attention, and (``weights``) its per-head read weights ``h x B x T x T``."""
        logits, l, r = self.self_projections(x)
        heads = self.head_probs(logits)
        y = read_memory(heads.mean(dim=2).to(logits.dtype), source_memory(l, r, keep))
        return y, (read_weights(heads, l, keep).to(y.dtype) if weights else None)

    def attend_causal(self, x: Tensor, keep: Optional[Tensor] = None,
                      state: Optional[CausalState] = None
                      ) -> Tuple[Tensor, Optional[CausalState]]:
        """Causal self-attention over ``x`` (``B x T x d``), continuing ``state`` when given
        (``{}`` before the first position); returns the output and the new state (None without
        a state: training)."""
        new_state: CausalState = {}
        if self.short_conv is not None:
            if keep is not None:
                x = x * keep.unsqueeze(-1).to(x.dtype)
            history = None if state is None else state.get("inputs")
            x, new_state["inputs"] = short_conv(x, self.short_conv.to(x.dtype), history)
        if state is None:
            logits, l, r = self.self_projections(x)
            a = self.head_probs(logits).mean(dim=2).to(logits.dtype)
            y, _, _ = causal_read(a, l, r, keep, form=self.causal_form,
                                  block_size=self.causal_block_size)
            return y, None
        prev_sum, prev_count = state.get("sum"), state.get("count")
        if prev_sum is None:
            prev_sum, prev_count = empty_state(x.size(0), self.proj_dim, self.embed_dim, x)
        on_fla = self.causal_form in FLA_FORMS
        if x.size(1) == 1 and not on_fla and not self.needs_autograd(x):
            y, new_state["sum"], new_state["count"] = self.decode_step(x, keep, prev_sum,
                                                                       prev_count)
            return y, new_state
        logits, l, r = self.self_projections(x)
        a = self.head_probs(logits).mean(dim=2).to(logits.dtype)
        if x.size(1) == 1:  # the general step (autograd), or fla-core's kernel
            step = fla_causal_step if on_fla else causal_step
            y, new_sum, new_count = step(a, l, r, keep, prev_sum, prev_count)
        else:
            y, new_sum, new_count = causal_read(a, l, r, keep, prev_sum, prev_count,
                                                form=self.causal_form,
                                                block_size=self.causal_block_size)
        new_state["sum"], new_state["count"] = new_sum, new_count
        return y, new_state

    def decode_step(self, x: Tensor, keep: Optional[Tensor], state_sum: Tensor,
                    state_count: Tensor) -> Tuple[Tensor, Tensor, Tensor]:
        """One causal position without autograd (``x``: ``B x 1 x d``) by
        :func:`~memsizer_fairseq.ops.causal.fused_causal_step`; the state is updated in place.
        The parameters are read directly: hooks on the submodules do not run here."""
        weight, bias = self._stacked.weights(self.projection_parameters())
        modules = self._modules
        l_norm, r_norm = modules["l_norm"], modules["r_norm"]
        return fused_causal_step(
            x, weight, bias, self.num_heads, self.proj_dim,
            (*parameters_of(l_norm), l_norm.eps), (*parameters_of(r_norm), r_norm.eps),
            state_sum, state_count, keep)

    @staticmethod
    def state_bytes(state: Optional[Dict[str, Optional[Tensor]]]) -> int:
        """Bytes held in a state dict."""
        return sum(v.numel() * v.element_size() for v in (state or {}).values() if v is not None)
