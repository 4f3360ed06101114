"""The engine's counter-based noise (engine/src/sample/noise.h), written
independently from its description: Philox4x32-10 keyed by the seed,
counter (block, stream), Box-Muller in f64. Shared by the sampler and
pipeline parity tests, which must draw the noises the engine draws."""
import math

import numpy as np

PHILOX_M0, PHILOX_M1 = np.uint64(0xD2511F53), np.uint64(0xCD9E8D57)
PHILOX_W0, PHILOX_W1 = 0x9E3779B9, 0xBB67AE85


def philox4x32_10(ctr, key):
    """ctr: [4, m] uint64 holding 32-bit words; key: two ints."""
    c = [w.astype(np.uint64) for w in ctr]
    k0, k1 = key
    mask = np.uint64(0xFFFFFFFF)
    for _ in range(10):
        p0 = PHILOX_M0 * c[0]
        p1 = PHILOX_M1 * c[2]
        c = [(p1 >> np.uint64(32)) ^ c[1] ^ np.uint64(k0), p1 & mask,
             (p0 >> np.uint64(32)) ^ c[3] ^ np.uint64(k1), p0 & mask]
        k0, k1 = (k0 + PHILOX_W0) & 0xFFFFFFFF, (k1 + PHILOX_W1) & 0xFFFFFFFF
    return c


def philox_noise(seed, stream, n):
    blocks = np.arange((n + 3) // 4, dtype=np.uint64)
    ctr = [blocks & np.uint64(0xFFFFFFFF), blocks >> np.uint64(32),
           np.full_like(blocks, stream & 0xFFFFFFFF), np.full_like(blocks, stream >> 32)]
    w = philox4x32_10(ctr, (seed & 0xFFFFFFFF, seed >> 32))
    u = [(x.astype(np.float64) + 0.5) / 2.0**32 for x in w]
    out = []
    for p in range(2):
        r = np.sqrt(-2.0 * np.log(u[2 * p]))
        a = 2.0 * math.pi * u[2 * p + 1]
        out += [r * np.cos(a), r * np.sin(a)]
    return np.stack(out, axis=1).reshape(-1)[:n].astype(np.float32)
