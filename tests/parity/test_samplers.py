"""Samplers: `turbodiff sample-toy` against loops written from the upstream code.

The "model" is a toy linear map, v = A x + b t (A_low for the low-noise
expert, b_uncond for the unconditional pass), easy to state on both sides.
- rCM: the loop of turbodiffusion/inference/wan2.{1_t2v,2_i2v}_infer.py in
  thu-ml/TurboDiffusion (f64 state, x = noise * t0, stochastic or ODE update,
  expert switch when t < boundary), rewritten here in PyTorch.
- Flow matching: diffusers' own UniPCMultistepScheduler configured as the Wan
  pipelines configure it, driven as WanPipeline drives it (CFG, A14B
  boundary); Euler on the same sigmas and timesteps.
- Noise: an independent Python Philox4x32-10 + Box-Muller must reproduce the
  engine's seeded noise bit for bit.
"""
import math

import numpy as np
import pytest
import torch
from diffusers import UniPCMultistepScheduler

from conftest import rel_l2, run_td
from noise_ref import philox4x32_10, philox_noise

N = 24   # latent values of the toy

def test_philox_known_answer():
    # Random123 kat_vectors, philox4x32_10
    got = philox4x32_10([np.array([0x243f6a88], np.uint64), np.array([0x85a308d3], np.uint64),
                         np.array([0x13198a2e], np.uint64), np.array([0x03707344], np.uint64)],
                        (0xa4093822, 0x299f31d0))
    assert [int(x[0]) for x in got] == [0xd16cfe09, 0x94fdcceb, 0x5001e420, 0x24126ea1]


# --- the toy model ------------------------------------------------------------
class Toy:
    def __init__(self, rng, experts=False, cfg=False):
        self.A = (rng.standard_normal((N, N)) * 0.3 / math.sqrt(N)).astype(np.float32)
        self.b = rng.standard_normal(N).astype(np.float32)
        self.A_low = (rng.standard_normal((N, N)) * 0.3 / math.sqrt(N)).astype(np.float32) if experts else None
        self.b_uncond = rng.standard_normal(N).astype(np.float32) if cfg else None

    def v(self, x, t, low=False, uncond=False):
        A = torch.from_numpy(self.A_low if low else self.A).double()
        b = torch.from_numpy(self.b_uncond if uncond else self.b).double()
        return A @ x + b * float(t)

    def save(self, d):
        args = []
        for name, arr in (("a", self.A), ("b", self.b), ("a-low", self.A_low), ("b-uncond", self.b_uncond)):
            if arr is not None:
                np.save(d / f"{name}.npy", arr)
                args += [f"--{name}", d / f"{name}.npy"]
        return args


# --- rCM, as TurboDiffusion's inference scripts run it ------------------------
def rcm_reference(toy, noises, steps, sigma_max, ode, boundary=None):
    mid_t = [1.5, 1.4, 1.0][: steps - 1]
    t_steps = torch.tensor([math.atan(sigma_max), *mid_t, 0], dtype=torch.float64)
    t_steps = torch.sin(t_steps) / (torch.cos(t_steps) + torch.sin(t_steps))
    x = torch.from_numpy(noises[0]).double() * t_steps[0]
    low = False
    for i, (t_cur, t_next) in enumerate(zip(t_steps[:-1], t_steps[1:])):
        if boundary is not None and t_cur.item() < boundary:
            low = True
        v = toy.v(x, t_cur, low=low)
        if ode:
            x = x - (t_cur - t_next) * v
        else:
            fresh = torch.from_numpy(noises[i + 1]).double() if t_next > 0 else torch.zeros(N, dtype=torch.float64)
            x = (1 - t_next) * (x - t_cur * v) + t_next * fresh
    return x.numpy()


@pytest.mark.parametrize("steps", [1, 2, 3, 4])
@pytest.mark.parametrize("ode", [False, True])
def test_rcm_given_noise(td_cli, tmp_path, seed, steps, ode):
    rng = np.random.default_rng(seed)
    toy = Toy(rng)
    noises = rng.standard_normal((steps, N)).astype(np.float32)
    np.save(tmp_path / "noise.npy", noises)
    run_td(td_cli, "sample-toy", "--sampler", "rcm", *toy.save(tmp_path), "--noise-from", tmp_path / "noise.npy",
           "--steps", steps, "--sigma-max", 80, *(["--ode"] if ode else []), "--out", tmp_path / "x.npy")
    ref = rcm_reference(toy, noises, steps, 80.0, ode)
    err = rel_l2(np.load(tmp_path / "x.npy"), ref)
    print(f"rcm steps {steps} ode {ode}: rel L2 {err:.3g}")
    assert err < 1e-5


def test_rcm_seeded_noise_and_experts(td_cli, tmp_path, seed):
    """i2v setting: sigma_max 200, A14B expert switch at 0.9, noise from the seed."""
    rng = np.random.default_rng(seed)
    toy = Toy(rng, experts=True)
    noises = [philox_noise(seed, i, N) for i in range(4)]
    run_td(td_cli, "sample-toy", "--sampler", "rcm", *toy.save(tmp_path), "--seed", seed, "--n", N,
           "--steps", 4, "--sigma-max", 200, "--boundary", 0.9, "--out", tmp_path / "x.npy")
    ref = rcm_reference(toy, noises, 4, 200.0, False, boundary=0.9)
    err = rel_l2(np.load(tmp_path / "x.npy"), ref)
    print(f"rcm seeded, two experts: rel L2 {err:.3g}")
    assert err < 1e-5


def test_rcm_short_noise_stack_fails(td_cli, tmp_path, seed):
    toy = Toy(np.random.default_rng(seed))
    np.save(tmp_path / "noise.npy", np.ones((3, N), np.float32))
    p = run_td(td_cli, "sample-toy", "--sampler", "rcm", *toy.save(tmp_path), "--noise-from", tmp_path / "noise.npy",
               "--steps", 4, "--out", tmp_path / "x.npy", check=False)
    assert p.returncode != 0 and "noise" in p.stderr, p.stderr


# --- flow matching: diffusers' UniPC, as WanPipeline drives it -----------------
def wan_unipc(shift):
    return UniPCMultistepScheduler(num_train_timesteps=1000, solver_order=2, prediction_type="flow_prediction",
                                   use_flow_sigmas=True, flow_shift=shift, solver_type="bh2", predict_x0=True,
                                   lower_order_final=True, final_sigmas_type="zero")


def flow_reference(toy, noise, solver, steps, shift, guidance, boundary=None, guidance_low=None):
    sched = wan_unipc(shift)
    sched.set_timesteps(steps)
    x = torch.from_numpy(noise).double()[None]   # the scheduler wants a batch dim
    for i, t in enumerate(sched.timesteps):
        low = boundary is not None and t < boundary * 1000
        g = guidance_low if low else guidance
        v = toy.v(x[0], t.item() / 1000, low=low)
        if g > 1:
            vu = toy.v(x[0], t.item() / 1000, low=low, uncond=True)
            v = vu + g * (v - vu)
        if solver == "unipc":
            x = sched.step(v[None], t, x, return_dict=False)[0]
        else:
            x = x + (sched.sigmas[i + 1].double() - sched.sigmas[i].double()) * v[None]
    return x[0].numpy()


@pytest.mark.parametrize("solver", ["euler", "unipc"])
@pytest.mark.parametrize("steps,shift,guidance", [(1, 5.0, 1.0), (2, 3.0, 5.0), (5, 5.0, 5.0), (20, 3.0, 4.0),
                                                  (50, 5.0, 5.0)])
def test_flow_matches_diffusers(td_cli, tmp_path, seed, solver, steps, shift, guidance):
    rng = np.random.default_rng(seed)
    toy = Toy(rng, cfg=True)
    noise = rng.standard_normal((1, N)).astype(np.float32)
    np.save(tmp_path / "noise.npy", noise)
    run_td(td_cli, "sample-toy", "--sampler", solver, *toy.save(tmp_path), "--noise-from", tmp_path / "noise.npy",
           "--steps", steps, "--shift", shift, "--guidance", guidance, "--out", tmp_path / "x.npy")
    ref = flow_reference(toy, noise[0], solver, steps, shift, guidance)
    err = rel_l2(np.load(tmp_path / "x.npy"), ref)
    print(f"{solver} steps {steps} shift {shift} cfg {guidance}: rel L2 {err:.3g}")
    assert err < 1e-5


@pytest.mark.parametrize("solver", ["euler", "unipc"])
def test_flow_two_experts(td_cli, tmp_path, seed, solver):
    """Wan2.2 A14B: expert and guidance switch at timestep boundary * 1000."""
    rng = np.random.default_rng(seed)
    toy = Toy(rng, experts=True, cfg=True)
    noise = rng.standard_normal((1, N)).astype(np.float32)
    np.save(tmp_path / "noise.npy", noise)
    run_td(td_cli, "sample-toy", "--sampler", solver, *toy.save(tmp_path), "--noise-from", tmp_path / "noise.npy",
           "--steps", 12, "--shift", 5.0, "--guidance", 4.0, "--guidance-low", 3.0, "--boundary", 0.875,
           "--out", tmp_path / "x.npy")
    ref = flow_reference(toy, noise[0], solver, 12, 5.0, 4.0, boundary=0.875, guidance_low=3.0)
    err = rel_l2(np.load(tmp_path / "x.npy"), ref)
    print(f"{solver} two experts: rel L2 {err:.3g}")
    assert err < 1e-5
