"""Attention modules: attention gate (Oktay et al. 2018), dual attention (Fu et al. 2019) and residual spatial
attention (Wang et al. 2019)."""

from common.attention.attention_gate import AttentionGate
from common.attention.dual_attention import ChannelAttention, DualAttention, PositionAttention
from common.attention.spatial_attention import SpatialAttention

__all__ = ["AttentionGate", "ChannelAttention", "DualAttention", "PositionAttention", "SpatialAttention"]
