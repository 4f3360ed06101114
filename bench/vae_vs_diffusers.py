"""Wan VAE decode on the CPU: ours (build/bench/bench_vae) vs diffusers'
AutoencoderKLWan, same random full-size model (base 96, z 16), same
latent size, same thread count, each in its own process (for its peak RSS).

Per-chunk seconds are recorded for both: chunk 0 turns the first latent
frame into 1 frame, every further chunk turns one latent frame into 4, and
every further chunk costs the same (the caches are full from chunk 2 on), so
an 81-frame (21 latent frames) decode is extrapolated as
chunk0 + 20 * mean(later chunks) when fewer latent frames are measured.

    python bench/vae_vs_diffusers.py --build build --latent-frames 2 --threads 2
"""
import argparse
import pathlib
import re
import resource
import subprocess
import sys
import tempfile
import time


def diffusers_child(model, t, h, w, threads):
    import torch
    from diffusers import AutoencoderKLWan
    from safetensors.torch import load_file
    torch.set_num_threads(threads)
    vae = AutoencoderKLWan()
    vae.load_state_dict(load_file(model))
    vae.eval()
    times = []
    fwd = vae.decoder.forward

    def timed(*a, **k):
        t0 = time.perf_counter()
        out = fwd(*a, **k)
        times.append(time.perf_counter() - t0)
        return out

    vae.decoder.forward = timed
    z = torch.randn(1, 16, t, h, w, generator=torch.Generator().manual_seed(0))
    t0 = time.perf_counter()
    with torch.no_grad():
        vae.decode(z)
    total = time.perf_counter() - t0
    for i, s in enumerate(times):
        print(f"chunk {i} seconds {s:.2f}")
    print(f"total seconds {total:.2f}")
    print(f"peak_rss_mb {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f}")


def parse(out):
    chunks = [float(m) for m in re.findall(r"chunk \d+ .*?seconds ([\d.]+)", out)]
    total = float(re.search(r"total seconds ([\d.]+)", out).group(1))
    rss = float(re.search(r"peak_rss_mb ([\d.]+)", out).group(1))
    return chunks, total, rss


def extrapolate(chunks, n=21):
    if len(chunks) >= n:
        return sum(chunks[:n])
    return chunks[0] + (n - 1) * sum(chunks[1:]) / len(chunks[1:])


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--build", default="build")
    ap.add_argument("--latent-frames", type=int, default=2)
    ap.add_argument("--height", type=int, default=480)
    ap.add_argument("--width", type=int, default=832)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--model", help="reuse a saved random model (.safetensors)")
    ap.add_argument("--child", nargs=5, help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.child:
        m, t, h, w, th = a.child
        diffusers_child(m, int(t), int(h), int(w), int(th))
        return
    h, w, t = a.height // 8, a.width // 8, a.latent_frames
    tmp = tempfile.mkdtemp()
    model = a.model
    if not model:
        import torch
        from diffusers import AutoencoderKLWan
        from safetensors.torch import save_file
        torch.manual_seed(0)
        vae = AutoencoderKLWan()
        model = f"{tmp}/wan_vae_random.safetensors"
        save_file({k: v.contiguous() for k, v in vae.state_dict().items()}, model)
        del vae
    ours = subprocess.run([str(pathlib.Path(a.build) / "bench" / "bench_vae"), model, str(t), str(h), str(w),
                           str(a.threads)], capture_output=True, text=True, check=True).stdout
    print("ours:\n" + ours)
    ref = subprocess.run([sys.executable, __file__, "--child", model, str(t), str(h), str(w), str(a.threads)],
                         capture_output=True, text=True, check=True).stdout
    print("diffusers:\n" + ref)
    (oc, ot, orss), (dc, dt, drss) = parse(ours), parse(ref)
    oe, de = extrapolate(oc), extrapolate(dc)
    print(f"{a.width}x{a.height}, {t} latent frames measured ({1 + 4 * (t - 1)} frames), {a.threads} threads")
    print(f"             measured s   81 frames s (extrap.)   peak RSS MB")
    print(f"ours        {ot:11.1f}   {oe:21.0f}   {orss:11.0f}")
    print(f"diffusers   {dt:11.1f}   {de:21.0f}   {drss:11.0f}")
    print(f"ratio diffusers/ours: time {de / oe:.2f}, peak RSS {drss / orss:.2f}")


if __name__ == "__main__":
    main()
