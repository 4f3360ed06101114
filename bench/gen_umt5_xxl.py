"""Write a randomly initialised umT5-XXL encoder (24 layers, d_model 4096,
64 heads x 64, d_ff 10240, vocab 256384, 32 buckets) as bf16 safetensors in
transformers/ComfyUI names, streamed tensor by tensor (about 11.4 GB on disk,
under 1 GB of memory), for the full-size encode-text benchmark in
bench/NOTES.md ("## umT5 encoder"). Also prints 100 random token ids.

Values are uniform with the std of Wan's init (linears 1/sqrt(fan_in),
embedding 1, bias tables 1/sqrt(2 * buckets * heads), norms 1 +- 0.1),
truncated to bf16.

    python bench/gen_umt5_xxl.py OUT.safetensors [--seed N]
"""
import argparse
import json
import struct

import numpy as np

V, D, H, F, L, B = 256384, 4096, 64, 10240, 24, 32
CHUNK = 1 << 25


def tensors():
    yield "shared.weight", (V, D), 1.0, 0.0
    for i in range(L):
        p = f"encoder.block.{i}.layer."
        yield p + "0.layer_norm.weight", (D,), 0.1, 1.0
        for n in "qkv":
            yield p + f"0.SelfAttention.{n}.weight", (D, D), D ** -0.5, 0.0
        yield p + "0.SelfAttention.o.weight", (D, D), D ** -0.5, 0.0
        yield p + "0.SelfAttention.relative_attention_bias.weight", (B, H), (2 * B * H) ** -0.5, 0.0
        yield p + "1.layer_norm.weight", (D,), 0.1, 1.0
        yield p + "1.DenseReluDense.wi_0.weight", (F, D), D ** -0.5, 0.0
        yield p + "1.DenseReluDense.wi_1.weight", (F, D), D ** -0.5, 0.0
        yield p + "1.DenseReluDense.wo.weight", (D, F), F ** -0.5, 0.0
    yield "encoder.final_layer_norm.weight", (D,), 0.1, 1.0


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("out")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    rng = np.random.default_rng(args.seed)
    header, off = {}, 0
    for name, shape, _, _ in tensors():
        n = int(np.prod(shape)) * 2
        header[name] = {"dtype": "BF16", "shape": list(shape), "data_offsets": [off, off + n]}
        off += n
    hb = json.dumps(header).encode()
    hb += b" " * (-len(hb) % 8)
    with open(args.out, "wb") as f:
        f.write(struct.pack("<Q", len(hb)) + hb)
        for name, shape, std, mean in tensors():
            left = int(np.prod(shape))
            a = np.float32(std * 3 ** 0.5)
            while left:
                n = min(left, CHUNK)
                x = rng.random(n, dtype=np.float32) * (2 * a) - a + np.float32(mean)
                f.write((x.view(np.uint32) >> 16).astype(np.uint16).tobytes())
                left -= n
    print(" ".join(map(str, rng.integers(0, V, size=100))))


if __name__ == "__main__":
    main()
