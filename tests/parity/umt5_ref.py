"""Tiny random umT5 encoders from transformers, written in both key layouts.

Shared by test_umt5.py and gen_umt5_fixture.py. The reference is
transformers' UMT5EncoderModel run as Wan runs its encoder: ids padded to 512
with the padding masked, the real tokens' rows kept and zero rows appended.
"""
import numpy as np
import torch
from safetensors.torch import save_file
from transformers import UMT5Config, UMT5EncoderModel

TEXT_LEN = 512

# transformers layer name -> Wan's T5Encoder name (wan/modules/t5.py)
_HF_TO_WAN = {
    "layer.0.layer_norm.weight": "norm1.weight",
    "layer.0.SelfAttention.q.weight": "attn.q.weight",
    "layer.0.SelfAttention.k.weight": "attn.k.weight",
    "layer.0.SelfAttention.v.weight": "attn.v.weight",
    "layer.0.SelfAttention.o.weight": "attn.o.weight",
    "layer.0.SelfAttention.relative_attention_bias.weight": "pos_embedding.embedding.weight",
    "layer.1.layer_norm.weight": "norm2.weight",
    "layer.1.DenseReluDense.wi_0.weight": "ffn.gate.0.weight",
    "layer.1.DenseReluDense.wi_1.weight": "ffn.fc1.weight",
    "layer.1.DenseReluDense.wo.weight": "ffn.fc2.weight",
}


def tiny_model(rng, layers=3, d_model=64, heads=4, d_kv=16, d_ff=160, vocab=300):
    cfg = UMT5Config(vocab_size=vocab, d_model=d_model, d_kv=d_kv, d_ff=d_ff, num_layers=layers,
                     num_heads=heads, relative_attention_num_buckets=32,
                     relative_attention_max_distance=128, feed_forward_proj="gated-gelu",
                     dropout_rate=0.0, layer_norm_epsilon=1e-6)
    model = UMT5EncoderModel(cfg).eval()
    # Re-draw every parameter so each one matters: position bias tables of
    # O(1) (a wrong bucket shows), norm weights away from 1, linears at
    # 1/sqrt(fan_in).
    gen = torch.Generator().manual_seed(int(rng.integers(2**31)))
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "relative_attention_bias" in name:
                p.copy_(torch.randn(p.shape, generator=gen))
            elif "layer_norm" in name:
                p.copy_(1 + 0.2 * torch.randn(p.shape, generator=gen))
            elif p.ndim == 2 and "shared" not in name and "embed" not in name:
                p.copy_(torch.randn(p.shape, generator=gen) / p.shape[1] ** 0.5)
            else:
                p.copy_(torch.randn(p.shape, generator=gen))
    return model


def hf_state(model):
    """transformers names as ComfyUI ships them: one shared.weight, no alias."""
    sd = {k: v.detach().clone().contiguous() for k, v in model.state_dict().items()}
    emb = sd.pop("encoder.embed_tokens.weight", None)
    if "shared.weight" not in sd:
        sd["shared.weight"] = emb
    return sd


def wan_state(model):
    sd = {}
    for k, v in hf_state(model).items():
        v = v.detach().clone().contiguous()
        if k == "shared.weight":
            sd["token_embedding.weight"] = v
        elif k == "encoder.final_layer_norm.weight":
            sd["norm.weight"] = v
        else:
            parts = k.split(".")  # encoder.block.N.<rest>
            assert parts[:2] == ["encoder", "block"], k
            sd[f"blocks.{parts[2]}.{_HF_TO_WAN['.'.join(parts[3:])]}"] = v
    return sd


def save(model, path, layout, dtype=torch.float32):
    sd = hf_state(model) if layout == "hf" else wan_state(model)
    sd = {k: v.to(dtype) for k, v in sd.items()}
    if layout == "hf":
        save_file(sd, str(path))
    else:
        torch.save(sd, str(path))


def reference(model, ids):
    """[512, d_model] f32: the encoding of ids (masked at 512), then zeros."""
    n = len(ids)
    padded = torch.zeros(1, TEXT_LEN, dtype=torch.long)
    padded[0, :n] = torch.tensor(ids)
    mask = torch.zeros(1, TEXT_LEN, dtype=torch.long)
    mask[0, :n] = 1
    with torch.no_grad():
        h = model(input_ids=padded, attention_mask=mask).last_hidden_state[0, :n].float()
    out = np.zeros((TEXT_LEN, h.shape[1]), np.float32)
    out[:n] = h.numpy()
    return out


def round_to_bf16(model):
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(p.to(torch.bfloat16).float())
    return model
