"""MultiheadAttention with dynamically quantized projections (the seed's BERT example).

The packed in-projection (in_proj_weight (3E, E), in_proj_bias) and out_proj become DynamicQuantizedLinear
(int8 per-channel weights, activations quantized per batch at run time, int32 accumulation, float output);
the attention core -- Q K^T / sqrt(D) + mask, softmax, A V -- stays in float, as in PyTorch's dynamic
quantization. Only the two projection methods of nn.MultiheadAttention are overridden; its forward
(masks, softmax, heads) is inherited unchanged.
"""
from ..nn.attention import MultiheadAttention
from ..nn.module import Module


class DynamicQuantizedMultiheadAttention(MultiheadAttention):
    def __init__(self, mha, in_proj, out_proj):
        Module.__init__(self)
        for attr in ("embed_dim", "num_heads", "head_dim", "dropout", "batch_first"):
            object.__setattr__(self, attr, getattr(mha, attr))
        self.register_parameter("in_proj_weight", None)
        self.register_parameter("in_proj_bias", None)
        self.in_proj = in_proj          # DynamicQuantizedLinear E -> 3E (rows: W_q, W_k, W_v)
        self.out_proj = out_proj        # DynamicQuantizedLinear E -> E
        self.training = mha.training

    def _project(self, x, index):
        E = self.embed_dim  # cross-attention: the packed GEMM, then the rows of W_q, W_k or W_v
        return self.in_proj(x)[..., index * E:(index + 1) * E]

    def _project_packed(self, x):
        return self.in_proj(x)
