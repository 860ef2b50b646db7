"""Attention modules: attention gate (Oktay et al. 2018) and dual attention (Fu et al. 2019)."""

from common.attention.attention_gate import AttentionGate
from common.attention.dual_attention import ChannelAttention, DualAttention, PositionAttention

__all__ = ["AttentionGate", "ChannelAttention", "DualAttention", "PositionAttention"]
