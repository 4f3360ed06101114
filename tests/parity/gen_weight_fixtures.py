"""Weight files written by torch.save and the safetensors library, with the
names, dtypes, shapes and SHA-256 hashes `turbodiff inspect --hash` must print.

    python gen_weight_fixtures.py [OUTDIR] [--seed N]

writes the files and expected.tsv (file, name, dtype, shape, sha256) into
OUTDIR (default tests/data/weights/, whose committed copy the C unit test
tests/unit/test_weights_fixtures.c reads back). test_weights.py calls
write_fixtures() with a fresh seed each run.

Hashes are of each tensor made contiguous, as little-endian bytes, so a
non-contiguous view saved by torch.save must hash the same after our reader
gathers it in C order.
"""
import argparse
import collections
import hashlib
import pathlib
import zipfile

import torch
from safetensors.torch import save_file

DTYPE_NAMES = {
    torch.float32: "f32", torch.float16: "f16", torch.bfloat16: "bf16", torch.int8: "i8",
    torch.uint8: "u8", torch.float8_e4m3fn: "f8_e4m3", torch.int64: "i64", torch.int32: "i32",
    torch.float64: "f64", torch.bool: "bool",
}


def rand(g, shape, dtype):
    if dtype == torch.bool:
        return torch.randint(0, 2, shape, generator=g).bool()
    if dtype in (torch.int8, torch.uint8, torch.int32, torch.int64):
        lo, hi = (0, 256) if dtype == torch.uint8 else (-120, 120)
        return torch.randint(lo, hi, shape, generator=g).to(dtype)
    return (torch.randn(shape, generator=g) * 3).to(dtype)


def tensor_hash(t):
    return hashlib.sha256(t.contiguous().reshape(-1).view(torch.uint8).numpy().tobytes()).hexdigest()


def flatten(obj, prefix=""):
    """Our .pth naming rule: dict keys and list indices joined by dots."""
    items = obj.items() if isinstance(obj, dict) else enumerate(obj)
    for k, v in items:
        name = f"{prefix}.{k}" if prefix else str(k)
        if isinstance(v, torch.Tensor):
            yield name, v
        elif isinstance(v, (dict, list, tuple)):
            yield from flatten(v, name)


def rows(fname, tensors):
    return [(fname, n, DTYPE_NAMES[t.dtype], ",".join(map(str, t.shape)), tensor_hash(t))
            for n, t in tensors]


class Tiny(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.proj = torch.nn.Linear(5, 3)
        self.norm = torch.nn.LayerNorm(3)
        self.register_buffer("steps", torch.tensor(7, dtype=torch.int64))


def write_fixtures(out, seed):
    out = pathlib.Path(out)
    out.mkdir(parents=True, exist_ok=True)
    g = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    expected = []

    # safetensors: every dtype, a 0-d and an empty tensor, metadata.
    st = {f"t_{DTYPE_NAMES[d]}": rand(g, (3, 5), d) for d in DTYPE_NAMES}
    st["scalar"] = rand(g, (), torch.float32)
    st["empty"] = rand(g, (0, 4), torch.float16)
    st["blocks.0.w4d"] = rand(g, (2, 3, 1, 2), torch.bfloat16)
    save_file(st, str(out / "all_dtypes.safetensors"), metadata={"format": "pt", "seed": str(seed)})
    expected += rows("all_dtypes.safetensors", st.items())

    # A module's state dict (OrderedDict with _metadata, parameters) with
    # TurboDiffusion's "net." prefix, mixed dtypes.
    m = Tiny()
    sd = collections.OrderedDict((f"net.{k}", v) for k, v in m.state_dict().items())
    sd._metadata = m.state_dict()._metadata
    for d in (torch.bfloat16, torch.float16, torch.int8, torch.uint8, torch.float8_e4m3fn,
              torch.int64, torch.int32, torch.float64, torch.bool):
        sd[f"net.extra.{DTYPE_NAMES[d]}"] = rand(g, (4, 3), d)
    sd["net.param"] = torch.nn.Parameter(rand(g, (2, 2), torch.float32))
    torch.save(sd, out / "state_dict.pth")
    expected += rows("state_dict.pth", sd.items())

    # Views: transposed, sliced with an offset, stepped, expanded (stride 0),
    # and several views of one storage (saved once, shared).
    base = rand(g, (6, 8), torch.float32)
    base16 = rand(g, (4, 10), torch.bfloat16)
    views = {
        "base": base,
        "t": base.t(),
        "rows": base[2:5],
        "cols": base[:, 3:7],
        "step": base[::2, 1::3],
        "expand": rand(g, (1, 5), torch.float16).expand(4, 5),
        "bf16_t": base16.t(),
        "bf16_slice": base16[1:3, 2:9:2],
        "f8_t": rand(g, (3, 4), torch.float8_e4m3fn).t(),
        "i8_col": rand(g, (5, 4), torch.int8)[:, 1],
    }
    torch.save(views, out / "views.pth")
    expected += rows("views.pth", views.items())

    # A training checkpoint: nested dicts and lists, non-tensor leaves.
    ck = {
        "state_dict": {"model": {"blocks.0.w": rand(g, (3, 2), torch.float32),
                                 "blocks.0.b": rand(g, (3,), torch.bfloat16)}},
        "ema": [rand(g, (2,), torch.float16), {"k": rand(g, (2, 2), torch.int64)}],
        "epoch": 3, "cfg": {"lr": 0.1, "name": "tiny", "flag": True, "none": None},
    }
    torch.save(ck, out / "nested.pth")
    expected += rows("nested.pth", flatten(ck))

    # Protocol 4 (FRAME, SHORT_BINUNICODE, MEMOIZE, STACK_GLOBAL opcodes).
    p4 = {"w": rand(g, (3, 3), torch.float32), "u": rand(g, (4,), torch.uint8)}
    torch.save(p4, out / "proto4.pth", pickle_protocol=4)
    expected += rows("proto4.pth", p4.items())

    # The same archive with every entry deflated (torch writes them stored).
    src = zipfile.ZipFile(out / "proto4.pth")
    with zipfile.ZipFile(out / "deflated.pth", "w", zipfile.ZIP_DEFLATED) as dst:
        for info in src.infolist():
            dst.writestr(info.filename, src.read(info.filename))
    src.close()
    expected += rows("deflated.pth", p4.items())

    with open(out / "expected.tsv", "w") as f:
        f.write("# file\tname\tdtype\tshape\tsha256 (written by tests/parity/gen_weight_fixtures.py)\n")
        for r in expected:
            f.write("\t".join(r) + "\n")
    return expected


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("outdir", nargs="?",
                    default=pathlib.Path(__file__).resolve().parents[1] / "data" / "weights")
    ap.add_argument("--seed", type=int, default=20260101)
    a = ap.parse_args()
    write_fixtures(a.outdir, a.seed)
    # The legacy (non-zip) format, which the reader must refuse by name.
    torch.save({"w": torch.ones(2)}, pathlib.Path(a.outdir) / "legacy.pth",
               _use_new_zipfile_serialization=False)


if __name__ == "__main__":
    main()
