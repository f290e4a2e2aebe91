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

The layer compiles with TorchScript (``torch.jit.script``). Compiled, it runs the PyTorch forms of
the causal read (:func:`~memsizer_fairseq.ops.causal.torch_causal_read`: flash-linear-attention's
kernels do not compile) and projects without the cached stacked weights (one GEMM per projection).
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
    projected_causal_step,
)
from ..ops.common import accumulation_dtype, check_positive
from ..ops.memory import fused_memory_read, read_memory, read_weights, source_memory
from ..ops.short_conv import short_conv
from .stacked_projections import StackedProjections, parameters_of

ROLES = ("causal", "self", "cross")
# the causal state, batch first; its values are Optional as in fairseq's incremental state, which
# holds this dict as it is
CausalState = Dict[str, Optional[Tensor]]
Parameters = Tuple[Tensor, Tensor, Tensor, Tensor, Tensor, Tensor]


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
        l, r = self.write_values(source)
        return source_memory(l, r, keep)

    def read(self, x: Tensor, memory: Tensor) -> Tensor:
        """``y = a(x) M`` (``B x T x d``, x's dtype): the read of a source's memory (``U x k x
        d``, from :meth:`memory`; ``U < B`` when ``B / U`` consecutive rows, the beams of a
        sentence, share it). Without autograd, :func:`~memsizer_fairseq.ops.memory.
        fused_memory_read`."""
        if self.needs_autograd(x):
            y = read_memory(self.head_probs(self.q_proj(x)).mean(dim=2), memory)
            return y if y.dtype == x.dtype else y.to(x.dtype)
        weight, bias = self.query_parameters()
        return fused_memory_read(x, weight, bias, self.num_heads, memory)

    def read_weights(self, x: Tensor, source: Tensor, keep: Optional[Tensor] = None) -> Tensor:
        """The per-head weights of :meth:`read` over the positions of ``source`` (``U x S x
        kdim``, keep ``U x S``): ``h x B x T x S`` in x's dtype (see
        :func:`~memsizer_fairseq.ops.memory.read_weights`)."""
        heads = self.head_probs(self.q_proj(x))
        return read_weights(heads, self.l_norm(self.l_proj(source)), keep).to(x.dtype)

    def needs_autograd(self, x: Tensor) -> bool:
        """True in training mode (attention dropout) or when the output needs a graph."""
        if self.training:
            return True
        if not torch.is_grad_enabled():
            return False
        if x.requires_grad:
            return True
        for parameter in self.projection_parameters():
            if parameter.requires_grad:
                return True
        return False

    def projection_parameters(self) -> Parameters:
        """``Phi``, ``W_l``, ``W_r`` and their biases."""
        if torch.jit.is_scripting():
            return (self.q_proj.weight, self.l_proj.weight, self.r_proj.weight,
                    self.q_proj.bias, self.l_proj.bias, self.r_proj.bias)
        else:
            modules = self._modules
            q_weight, q_bias = parameters_of(modules["q_proj"])
            l_weight, l_bias = parameters_of(modules["l_proj"])
            r_weight, r_bias = parameters_of(modules["r_proj"])
            return q_weight, l_weight, r_weight, q_bias, l_bias, r_bias

    def query_parameters(self) -> Tuple[Tensor, Tensor]:
        """``Phi``'s weight and bias."""
        if torch.jit.is_scripting():
            return self.q_proj.weight, self.q_proj.bias
        else:
            return parameters_of(self._modules["q_proj"])

    def stacked_parameters(self) -> Tuple[Tensor, Tensor]:
        """``Phi``, ``W_l``, ``W_r`` stacked into one weight and one bias (cached; compiled by
        TorchScript, stacked at each call)."""
        params = self.projection_parameters()
        if torch.jit.is_scripting():
            return torch.cat(params[:3]), torch.cat(params[3:])
        else:
            return self._stacked.weights(params)

    def self_projections(self, x: Tensor) -> Tuple[Tensor, Tensor, Tensor]:
        """The slot logits ``Phi x``, ``l(x)`` and ``r(x)`` of self-attention: without autograd
        one GEMM on the stacked weights, otherwise each ``nn.Linear`` (for their gradients)."""
        if self.needs_autograd(x):
            l, r = self.write_values(x)
            return self.q_proj(x), l, r
        weight, bias = self.stacked_parameters()
        projected = F.linear(x, weight, bias)
        logit_dim = self.num_heads * self.proj_dim
        return (projected.narrow(2, 0, logit_dim),
                self.l_norm(projected.narrow(2, logit_dim, self.proj_dim)),
                self.r_norm(projected.narrow(2, logit_dim + self.proj_dim, self.embed_dim)))

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
        if source is None:
            raise ValueError("cross-attention reads a source: pass source")
        return self.read(x, self.memory(source, source_keep))

    def attend_self(self, x: Tensor, keep: Optional[Tensor] = None, weights: bool = False
                    ) -> Tuple[Tensor, Optional[Tensor]]:
        """Encoder self-attention, and (``weights``) its per-head read weights ``h x B x T x T``."""
        logits, l, r = self.self_projections(x)
        heads = self.head_probs(logits)
        y = read_memory(heads.mean(dim=2), source_memory(l, r, keep)).to(x.dtype)
        per_head: Optional[Tensor] = None
        if weights:
            per_head = read_weights(heads, l, keep).to(y.dtype)
        return y, per_head

    def attend_causal(self, x: Tensor, keep: Optional[Tensor] = None,
                      state: Optional[CausalState] = None
                      ) -> Tuple[Tensor, Optional[CausalState]]:
        """Causal self-attention over ``x`` (``B x T x d``), continuing ``state`` when given
        (``{}`` before the first position); returns the output and the new state (None without
        a state: training)."""
        new_state: CausalState = {}
        conv = self.short_conv
        if conv is not None:
            if keep is not None:
                x = x * keep.unsqueeze(-1).to(x.dtype)
            history: Optional[Tensor] = None
            if state is not None:
                history = state.get("inputs")
            x, inputs = short_conv(x, conv.to(x.dtype), history)
            new_state["inputs"] = inputs
        if state is None:
            logits, l, r = self.self_projections(x)
            a = self.head_probs(logits).mean(dim=2).to(logits.dtype)
            y = causal_read(a, l, r, keep, None, None, self.causal_form,
                            self.causal_block_size)[0]
            return y, None
        state_sum, state_count = state.get("sum"), state.get("count")
        if state_sum is None or state_count is None:
            state_sum, state_count = empty_state(x.size(0), self.proj_dim, self.embed_dim, x)
        on_fla = False
        if not torch.jit.is_scripting():
            on_fla = self.causal_form in FLA_FORMS
        if x.size(1) == 1 and not on_fla and not self.needs_autograd(x):
            y, new_sum, new_count = self.decode_step(x, keep, state_sum, state_count)
        else:
            logits, l, r = self.self_projections(x)
            a = self.head_probs(logits).mean(dim=2).to(logits.dtype)
            if x.size(1) > 1:
                y, new_sum, new_count = causal_read(a, l, r, keep, state_sum, state_count,
                                                    self.causal_form, self.causal_block_size)
            elif on_fla:  # fla-core's kernel for one position
                y, new_sum, new_count = self.fla_step(a, l, r, keep, state_sum, state_count)
            else:  # the general step (autograd)
                y, new_sum, new_count = causal_step(a, l, r, keep, state_sum, state_count)
        new_state["sum"] = new_sum
        new_state["count"] = new_count
        return y, new_state

    def decode_step(self, x: Tensor, keep: Optional[Tensor], state_sum: Tensor,
                    state_count: Tensor) -> Tuple[Tensor, Tensor, Tensor]:
        """One causal position without autograd (``x``: ``B x 1 x d``) by
        :func:`~memsizer_fairseq.ops.causal.fused_causal_step`; the state is updated in place.
        The parameters are read directly: hooks on the submodules do not run here. (Compiled
        by TorchScript: one GEMM per projection, then the same step.)"""
        if torch.jit.is_scripting():
            return projected_causal_step(
                F.linear(x, self.q_proj.weight, self.q_proj.bias),
                F.linear(x, self.l_proj.weight, self.l_proj.bias),
                F.linear(x, self.r_proj.weight, self.r_proj.bias), self.num_heads,
                (self.l_norm.weight, self.l_norm.bias, self.l_norm.eps),
                (self.r_norm.weight, self.r_norm.bias, self.r_norm.eps),
                state_sum, state_count, keep)
        else:
            weight, bias = self._stacked.weights(self.projection_parameters())
            modules = self._modules
            l_norm, r_norm = modules["l_norm"], modules["r_norm"]
            return fused_causal_step(
                x, weight, bias, self.num_heads, self.proj_dim,
                (*parameters_of(l_norm), l_norm.eps), (*parameters_of(r_norm), r_norm.eps),
                state_sum, state_count, keep)

    @torch.jit.unused
    def fla_step(self, a: Tensor, l: Tensor, r: Tensor, keep: Optional[Tensor],
                 state_sum: Tensor, state_count: Tensor) -> Tuple[Tensor, Tensor, Tensor]:
        """One position on flash-linear-attention's recurrent kernel (not compiled by
        TorchScript: a compiled layer never calls it)."""
        return fla_causal_step(a, l, r, keep, state_sum, state_count)

    @staticmethod
    def state_bytes(state: Optional[Dict[str, Optional[Tensor]]]) -> int:
        """Bytes held in a state dict."""
        return sum(v.numel() * v.element_size() for v in (state or {}).values() if v is not None)
