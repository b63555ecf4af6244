"""Diffusion samplers as users run them: a noise-predicting denoiser called once per step of a DDIM, DDPM, Euler or
DPM-Solver++ trajectory, from pure noise to an image. Pure numpy, so the same code runs the fp32 PyTorch reference at
prepare time and any runtime's artifact in the worker (locally, on a board, on a cluster node).

``Sampler`` is what a denoiser model declares: the method, the number of steps, the noise schedule it was trained with
(β from ``beta_start`` to ``beta_end`` over ``train_steps``: "linear", as in DDPM, Ho et al. 2020, or diffusers'
"scaled_linear", linear in √β), how the timesteps are spaced, the names of its image and timestep inputs, and
optionally the decoder model its final latents go through.

- "ddim" and "ddpm" with the default "linspace" spacing: ``steps`` timesteps evenly spaced over the training steps,
  rounded (DDIM's "uniform" skip, Song et al. 2021); DDPM is the ancestral sampler on that same respaced schedule.
  With "leading" or "trailing" spacing they step as diffusers' DDIMScheduler (η = 0; where x0 is clipped, as with
  ``use_clipped_model_output``: ε re-derived from the clipped x0) and DDPMScheduler ("fixed_small" variance) do.
  DDPM's noise is drawn from ``seed`` so that every artifact of a model walks the same path (not from torch's
  generator: a diffusers DDPM run draws other noise).
- "euler": diffusers' EulerDiscreteScheduler (no churn, σ linear in t between training steps, the last σ 0);
  "dpmsolver++": its DPMSolverMultistepScheduler, DPM-Solver++ 2M (Lu et al. 2022: order 2, midpoint, the first and
  the last step first order, the last σ 0). Each reads the three spacings as its diffusers scheduler does; neither
  clips x0.

``Sampler.from_diffusers`` (and ``from_dict``'s ``scheduler`` key) maps a diffusers ``scheduler_config.json`` onto a
``Sampler`` and refuses, one line each, the settings these loops do not compute the same way. ᾱ is float64 here
(diffusers' is a float32 running product: within 1e-6 of it); the loops' arithmetic is float32.
"""
from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import numpy as np

METHODS = ("ddim", "ddpm", "euler", "dpmsolver++")
SPACINGS = ("linspace", "leading", "trailing")
BETA_SCHEDULES = ("linear", "scaled_linear")
_LABELS = {"ddim": "DDIM", "ddpm": "DDPM", "euler": "Euler", "dpmsolver++": "DPM-Solver++ 2M"}
_CLIPPING = ("ddim", "ddpm")
_LATER_FIELDS = {"timestep_spacing": "linspace", "steps_offset": 0, "beta_schedule": "linear"}
"""Fields added after samplers were first recorded: ``to_dict`` leaves them out at these defaults, so a sampler that
does not use them keeps its dict (and the ids made from it)."""


@dataclass(frozen=True)
class Sampler:
    """A sampling loop for a denoiser that predicts the noise ε in ``x_t`` (inputs ``image_input``, ``time_input``;
    the timestep, in training steps, is passed as float32, one per batch item). The denoiser's other inputs are its
    conditioning (a text encoder's ``encoder_hidden_states``, a class label): each image of a sample set gets its own,
    drawn from the model's seeded inputs, the same at every step (``conditioning_inputs``)."""

    method: str = "ddim"
    steps: int = 20
    train_steps: int = 1000
    beta_start: float = 1e-4
    beta_end: float = 0.02
    image_input: str = "x"
    time_input: str = "t"
    clip: float | None = None
    """The predicted clean image is clipped to [-clip, clip] at each step (0 = never), as image diffusion does: ddim
    and ddpm only. Unset: 1.0 for them, 0 for euler and dpmsolver++ (which never clip, as in diffusers)."""
    seed: int = 0
    """DDPM's per-step noise comes from this seed (the same for every artifact of the model)."""
    decoder: str = ""
    """A registered model that turns the loop's final latents into images (a latent diffusion's VAE decoder; one
    input, shaped like the denoiser's image input); '' = the loop's output is the image."""
    timestep_spacing: str = "linspace"
    """How the ``steps`` timesteps are picked from the training steps (diffusers' names; each method reads them as its
    diffusers scheduler does): "linspace" (evenly spaced from train_steps − 1 to 0), "leading" (multiples of
    train_steps // steps, plus ``steps_offset``), "trailing" (evenly spaced from train_steps − 1 down, not to 0)."""
    steps_offset: int = 0
    """Added to every "leading" timestep (diffusers' ``steps_offset``: Stable Diffusion's configs say 1)."""
    beta_schedule: str = "linear"
    """β over the training steps: "linear" from beta_start to beta_end, or "scaled_linear" (linear in √β, squared)."""

    def conditioning_inputs(self, names: Sequence[str]) -> list[str]:
        """The denoiser's inputs other than the image and the timestep, in order; a ValueError naming what is
        missing when ``names`` lacks either of those two."""
        missing = [n for n in (self.image_input, self.time_input) if n not in names]
        if missing:
            raise ValueError(f"the sampler's inputs ({self.image_input!r}, {self.time_input!r}) are not among the "
                             f"denoiser's ({', '.join(map(repr, names))}): {', '.join(map(repr, missing))} missing")
        return [n for n in names if n not in (self.image_input, self.time_input)]

    def __post_init__(self) -> None:
        if self.method not in METHODS:
            raise ValueError(f"sampler method must be one of {', '.join(METHODS)}, not {self.method!r}")
        if not 1 <= self.steps <= self.train_steps:
            raise ValueError(f"sampler steps must be between 1 and train_steps ({self.train_steps}), not {self.steps}")
        if not 0 < self.beta_start < self.beta_end < 1:
            raise ValueError(f"sampler betas need 0 < beta_start < beta_end < 1, not {self.beta_start}, "
                             f"{self.beta_end}")
        if self.clip is None:
            object.__setattr__(self, "clip", 1.0 if self.method in _CLIPPING else 0.0)
        if self.clip < 0:
            raise ValueError(f"sampler clip must be >= 0, not {self.clip}")
        if self.clip and self.method not in _CLIPPING:
            raise ValueError(f"sampler clip applies to ddim and ddpm only ({self.method} never clips x0, as in "
                             f"diffusers): leave it out or 0, not {self.clip}")
        if self.timestep_spacing not in SPACINGS:
            raise ValueError(f"sampler timestep_spacing must be one of {', '.join(SPACINGS)}, not "
                             f"{self.timestep_spacing!r}")
        if self.beta_schedule not in BETA_SCHEDULES:
            raise ValueError(f"sampler beta_schedule must be one of {', '.join(BETA_SCHEDULES)}, not "
                             f"{self.beta_schedule!r}")
        if isinstance(self.steps_offset, bool) or not isinstance(self.steps_offset, int) or self.steps_offset < 0:
            raise ValueError(f"sampler steps_offset must be an integer >= 0, not {self.steps_offset!r}")
        if self.steps_offset and self.timestep_spacing != "leading":
            raise ValueError(f"sampler steps_offset applies to 'leading' spacing only, not {self.timestep_spacing!r}")
        ts = timesteps(self)
        where = (f"sampler {self.method} with {self.timestep_spacing!r} spacing, {self.steps} of {self.train_steps} "
                 "steps")
        if len(ts) != self.steps:  # diffusers' np.arange(T, 0, -T / steps) can give one more, the last at -1
            raise ValueError(f"{where}: diffusers' 'trailing' spacing gives {len(ts)} timesteps, not {self.steps}; "
                             "choose another number of steps")
        if ts.min() < 0 or ts.max() > self.train_steps - 1:
            raise ValueError(f"{where}: timesteps must lie in 0 … {self.train_steps - 1}, not up to {ts.max()} "
                             f"(steps_offset {self.steps_offset})")
        if len(np.unique(ts)) != len(ts):
            raise ValueError(f"{where}: its timesteps repeat; use fewer steps")

    def to_dict(self) -> dict[str, Any]:
        """The fields, less those of ``_LATER_FIELDS`` at their defaults (``from_dict`` restores them)."""
        return {k: v for k, v in dataclasses.asdict(self).items()
                if not (k in _LATER_FIELDS and v == _LATER_FIELDS[k])}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], root: str | Path | None = None) -> "Sampler":
        """From a request or a project file; unknown keys are an error naming the known ones. ``scheduler``: a diffusers
        scheduler config, as a mapping or the path of its JSON file (or of the folder holding its
        ``scheduler_config.json``; a relative path is taken from ``root``, default the working directory), read by
        ``from_diffusers`` with the other keys (``steps``, the input names, ``seed``, ``decoder``) as its overrides."""
        known = {f.name for f in dataclasses.fields(cls)} | {"scheduler"}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"unknown sampler field(s) {', '.join(unknown)} (known: {', '.join(sorted(known))})")
        data = dict(data)
        if "scheduler" in data:
            config = read_scheduler_config(data.pop("scheduler"), root)
            return cls.from_diffusers(config, data.pop("steps", cls.__dataclass_fields__["steps"].default), **data)
        return cls(**data)

    @classmethod
    def from_diffusers(cls, config: Mapping[str, Any], steps: int, **overrides: Any) -> "Sampler":
        """The sampler a diffusers scheduler ``config`` (a ``scheduler_config.json``'s contents, with its
        ``_class_name``) runs for ``steps`` inference steps. The schedule, spacing, method and clipping come from the
        config; ``overrides`` may set the fields it does not (``image_input``, ``time_input``, ``seed``,
        ``decoder``). A setting these loops do not compute the same way is a one-line error naming it; settings that
        change nothing here, and keys the class does not take (diffusers ignores those too), are ignored."""
        name = config.get("_class_name")
        if not isinstance(name, str) or name not in _SCHEDULERS:
            raise ValueError(f"unsupported diffusers scheduler {name!r} (supported: {', '.join(sorted(_SCHEDULERS))})")
        method, rules = _SCHEDULERS[name]
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(overrides) - known)
        if unknown:
            raise ValueError(f"unknown sampler field(s) {', '.join(unknown)} (known: {', '.join(sorted(known))})")
        fixed = sorted(set(overrides) - _OVERRIDABLE)
        if fixed:
            raise ValueError(f"sampler field(s) {', '.join(fixed)} come from the scheduler config ({name}); set "
                             "them there")

        def setting(key: str) -> Any:
            return config.get(key, rules[key][0])

        for key, (_, allowed) in rules.items():  # () = any value: a field, or checked below
            if allowed and setting(key) not in allowed:
                reason = _UNSUPPORTED_REASONS.get((name, key, str(setting(key))), "")
                raise ValueError(f"{name} {key} = {setting(key)!r} is not supported by the harness's {method}{reason} "
                                 f"(supported: {', '.join(map(repr, allowed))})")
        spacing = setting("timestep_spacing")
        clip = 0.0
        if method == "ddpm" and setting("clip_sample"):
            clip = float(setting("clip_sample_range"))
        sampler = cls(method=method, steps=steps, train_steps=setting("num_train_timesteps"),
                      beta_start=setting("beta_start"), beta_end=setting("beta_end"),
                      beta_schedule=setting("beta_schedule"), timestep_spacing=spacing,
                      steps_offset=setting("steps_offset") if spacing == "leading" else 0,  # the others ignore it
                      clip=clip, **overrides)
        if method == "ddpm" and spacing == "linspace":
            theirs = np.linspace(0, sampler.train_steps - 1, steps).round()[::-1].astype(np.int64)
            if not np.array_equal(theirs, timesteps(sampler)):
                raise ValueError(f"{name} timestep_spacing = 'linspace' rounds {steps} of {sampler.train_steps} "
                                 "timesteps otherwise than the harness's ddpm; use 'leading' or 'trailing', or "
                                 "another number of steps")
        lowest = setting("lambda_min_clipped") if method == "dpmsolver++" else -np.inf
        if lowest > -np.inf:
            abar = alpha_bars(sampler)
            if np.any(0.5 * np.log(abar / (1.0 - abar)) < lowest):  # λ = log α − log σ under the clip: fewer steps
                raise ValueError(f"{name} lambda_min_clipped = {lowest!r} clips this schedule's λ(t); only a clip "
                                 "below every λ(t) (default -inf) is supported")
        return sampler

    @property
    def label(self) -> str:
        spacing = "" if self.timestep_spacing == "linspace" else f", {self.timestep_spacing} spacing"
        return (f"{_LABELS[self.method]} {self.steps} steps{spacing}"
                + (f" + decoder {self.decoder}" if self.decoder else ""))


_OVERRIDABLE = {"image_input", "time_input", "seed", "decoder"}


def _rules(spacing: str, spacings: tuple[str, ...] = SPACINGS, **own: tuple[Any, tuple[Any, ...]]) -> dict:
    """A scheduler class's settings: {key: (diffusers' default, the values the harness's loop computes alike)}."""
    return {"num_train_timesteps": (1000, ()), "beta_start": (0.0001, ()), "beta_end": (0.02, ()),
            "beta_schedule": ("linear", BETA_SCHEDULES), "timestep_spacing": (spacing, spacings),
            "steps_offset": (0, ()), "trained_betas": (None, (None,)), "prediction_type": ("epsilon", ("epsilon",)),
            "rescale_betas_zero_snr": (False, (False,)), **own}


_OFF = (False, (False,))
_SCHEDULERS: dict[str, tuple[str, dict[str, tuple[Any, tuple[Any, ...]]]]] = {
    # sigma_min / sigma_max only bound karras, exponential and beta sigmas (refused)
    "EulerDiscreteScheduler": ("euler", _rules(
        "linspace", interpolation_type=("linear", ("linear",)), use_karras_sigmas=(False, (False, None)),
        use_exponential_sigmas=(False, (False, None)), use_beta_sigmas=(False, (False, None)),
        timestep_type=("discrete", ("discrete",)), final_sigmas_type=("zero", ("zero",)))),
    # with order 2 and a last σ of 0, lower_order_final and euler_at_final change nothing: the last step is first
    # order whatever they say; dynamic_thresholding_ratio, sample_max_value, flow_shift, time_shift_type only serve
    # settings refused here
    "DPMSolverMultistepScheduler": ("dpmsolver++", _rules(
        "linspace", algorithm_type=("dpmsolver++", ("dpmsolver++",)), solver_order=(2, (2,)),
        solver_type=("midpoint", ("midpoint",)), thresholding=_OFF, use_karras_sigmas=_OFF,
        use_exponential_sigmas=_OFF, use_beta_sigmas=_OFF, use_lu_lambdas=_OFF, use_flow_sigmas=_OFF,
        final_sigmas_type=("zero", ("zero",)), variance_type=(None, (None,)), use_dynamic_shifting=_OFF,
        lambda_min_clipped=(-np.inf, ()))),
    # diffusers' DDIM steps with the model's ε after clipping x0 (use_clipped_model_output False), the harness's
    # re-derives ε from the clipped x0: the same only without clipping
    "DDIMScheduler": ("ddim", _rules(
        "leading", ("leading", "trailing"), clip_sample=(True, (False,)), set_alpha_to_one=(True, (True,)),
        thresholding=_OFF)),
    "DDPMScheduler": ("ddpm", _rules(
        "leading", variance_type=("fixed_small", ("fixed_small",)), thresholding=_OFF, clip_sample=(True, ()),
        clip_sample_range=(1.0, ()))),
}
_UNSUPPORTED_REASONS = {
    ("DDIMScheduler", "timestep_spacing", "linspace"):
        " (diffusers' DDIM then steps from t to t − num_train_timesteps // steps, not to its next timestep)",
}


def read_scheduler_config(source: Mapping[str, Any] | str | Path, root: str | Path | None = None) -> dict[str, Any]:
    """A diffusers scheduler config: ``source`` itself (a mapping), or read from the JSON file it names (or the
    ``scheduler_config.json`` of the folder it names), relative to ``root`` (default: the working directory)."""
    if isinstance(source, Mapping):
        return dict(source)
    if not isinstance(source, (str, Path)):
        raise ValueError("sampler scheduler must be a diffusers scheduler config (a table) or the path of its JSON "
                         f"file, not {type(source).__name__}")
    path = Path(source).expanduser()
    if not path.is_absolute() and root is not None:
        path = Path(root) / path
    if path.is_dir():
        path = path / "scheduler_config.json"
    try:
        config = json.loads(path.read_text())
    except OSError as exc:
        raise ValueError(f"sampler scheduler: cannot read {path}: {exc.strerror or exc}") from None
    except ValueError as exc:
        raise ValueError(f"sampler scheduler: {path} is not JSON: {exc}") from None
    if not isinstance(config, dict):
        raise ValueError(f"sampler scheduler: {path} holds a {type(config).__name__}, not a scheduler config object")
    return config


def alpha_bars(sampler: Sampler) -> np.ndarray:
    """ᾱ_t = Π(1 − β_s), s ≤ t, for t = 0 … train_steps − 1 (float64)."""
    if sampler.beta_schedule == "scaled_linear":
        betas = np.linspace(sampler.beta_start ** 0.5, sampler.beta_end ** 0.5, sampler.train_steps,
                            dtype=np.float64) ** 2
    else:
        betas = np.linspace(sampler.beta_start, sampler.beta_end, sampler.train_steps, dtype=np.float64)
    return np.cumprod(1.0 - betas)


def timesteps(sampler: Sampler) -> np.ndarray:
    """The trajectory's timesteps, noisiest first, in training steps: int64, but float32 for euler (whose "linspace"
    ones are not whole numbers: diffusers passes them to the model as they are).

    "linspace": ``steps`` evenly spaced from train_steps − 1 to 0, rounded (euler: not rounded; dpmsolver++: steps + 1
    of them, rounded, less the 0); "leading": k · (train_steps // steps) + steps_offset, k = steps − 1 … 0
    (dpmsolver++: // (steps + 1)); "trailing": train_steps − k · train_steps / steps, rounded, − 1, k = 0 … steps − 1.
    """
    n, total = sampler.steps, sampler.train_steps
    dpm = sampler.method == "dpmsolver++"
    if sampler.timestep_spacing == "linspace":
        if sampler.method == "euler":
            return np.linspace(0, total - 1, n, dtype=np.float32)[::-1].copy()
        if dpm:
            ts = np.linspace(0, total - 1, n + 1).round()[::-1][:-1]
        else:
            ts = np.round(np.linspace(total - 1, 0, n))
    elif sampler.timestep_spacing == "leading":
        ts = (np.arange(n + dpm) * (total // (n + dpm)))[::-1][:n] + sampler.steps_offset
    else:
        ts = np.round(np.arange(total, 0, -total / n)) - 1
    ts = ts.astype(np.int64)
    return ts.astype(np.float32) if sampler.method == "euler" else ts


def sigmas(sampler: Sampler) -> np.ndarray:
    """Euler's and DPM-Solver++'s σ at each timestep, σ_t = √((1 − ᾱ_t) / ᾱ_t) (linear in t between training steps),
    and a last σ of 0 (float32, one more than the timesteps)."""
    abar = alpha_bars(sampler)
    train = np.sqrt((1.0 - abar) / abar)
    at = np.interp(timesteps(sampler).astype(np.float64), np.arange(len(train)), train)
    return np.append(at, 0.0).astype(np.float32)


def step_noise(sampler: Sampler, shape: tuple[int, ...], step: int, rows: np.ndarray) -> np.ndarray:
    """DDPM's fresh noise at ``step`` for the images ``rows`` of a sample set (each image's own, seeded by the
    sampler's seed, the step and its row: the same whichever batches a set is generated in; float32)."""
    return np.stack([np.random.default_rng([sampler.seed, step, int(r)]).standard_normal(shape[1:])
                     for r in rows]).astype(np.float32)


def sample(denoise: Callable[[np.ndarray, np.ndarray], np.ndarray], sampler: Sampler, noise: np.ndarray,
           on_step: Callable[[int], None] | None = None, rows: np.ndarray | None = None) -> np.ndarray:
    """Run the trajectory from ``noise`` (unit Gaussian, float32 N×…) and return the generated images (float32).

    ``denoise(x_t, t)`` returns the predicted noise for a batch (``t``: float32, one per item; for euler, ``x_t`` is
    the input scaled by 1 / √(σ² + 1), as diffusers' ``scale_model_input``). ``on_step(i)`` is called after step
    ``i``'s denoiser call. ``rows``: the images' rows in their sample set (default 0…N−1), which seed DDPM's
    per-image noise. The arithmetic is float32 throughout (the same on every NumPy)."""
    if sampler.method == "euler":
        return _euler(denoise, sampler, noise, on_step)
    if sampler.method == "dpmsolver++":
        return _dpmsolver(denoise, sampler, noise, on_step)
    abar = alpha_bars(sampler).astype(np.float32)
    ts = timesteps(sampler)
    if sampler.method == "ddim" and sampler.timestep_spacing != "linspace":
        prev = ts - sampler.train_steps // sampler.steps  # diffusers' DDIM: not always the next timestep
    else:
        prev = np.append(ts[1:], -1)
    rows = np.arange(len(noise)) if rows is None else np.asarray(rows)
    one = np.float32(1.0)
    x = noise.astype(np.float32)
    for i, t in enumerate(ts):
        eps = np.asarray(denoise(x, np.full(len(x), float(t), dtype=np.float32)), dtype=np.float32)
        if on_step is not None:
            on_step(i)
        a_t = abar[t]
        a_prev = abar[prev[i]] if prev[i] >= 0 else one
        x0 = (x - np.sqrt(one - a_t) * eps) / np.sqrt(a_t)
        if sampler.clip:
            x0 = np.clip(x0, np.float32(-sampler.clip), np.float32(sampler.clip))
        if sampler.method == "ddim" or i + 1 == len(ts):
            # η = 0: the deterministic DDIM step, re-deriving ε from the (clipped) x0 estimate
            eps_hat = (x - np.sqrt(a_t) * x0) / np.sqrt(one - a_t)
            x = np.sqrt(a_prev) * x0 + np.sqrt(one - a_prev) * eps_hat
        else:  # DDPM ancestral step on the respaced schedule: the posterior q(x_prev | x_t, x0)
            beta = one - a_t / a_prev
            mean = (np.sqrt(a_prev) * beta / (one - a_t)) * x0 + (np.sqrt(one - beta) * (one - a_prev) / (one - a_t)) * x
            var = beta * (one - a_prev) / (one - a_t)
            x = mean + np.sqrt(var) * step_noise(sampler, x.shape, i, rows)
        x = x.astype(np.float32)
    return x


def _euler(denoise: Callable[[np.ndarray, np.ndarray], np.ndarray], sampler: Sampler, noise: np.ndarray,
           on_step: Callable[[int], None] | None) -> np.ndarray:
    """diffusers' EulerDiscreteScheduler without churn, in its own variable x = x_t / √ᾱ_t = x0 + σ ε."""
    ts, sig = timesteps(sampler), sigmas(sampler)
    one = np.float32(1.0)
    init = sig.max()  # diffusers' init_noise_sigma
    if sampler.timestep_spacing == "leading":
        init = np.sqrt(init * init + one)
    x = noise.astype(np.float32) * init
    for i, t in enumerate(ts):
        s, s_next = sig[i], sig[i + 1]
        eps = np.asarray(denoise(x / np.sqrt(s * s + one), np.full(len(x), t, dtype=np.float32)), dtype=np.float32)
        if on_step is not None:
            on_step(i)
        x0 = x - s * eps
        x = (x + ((x - x0) / s) * (s_next - s)).astype(np.float32)  # dx/dσ = (x − x0) / σ, one step to σ_next
    return x


def _dpmsolver(denoise: Callable[[np.ndarray, np.ndarray], np.ndarray], sampler: Sampler, noise: np.ndarray,
               on_step: Callable[[int], None] | None) -> np.ndarray:
    """diffusers' DPMSolverMultistepScheduler, DPM-Solver++ 2M: data predictions x0 from ε; a first-order (DDIM)
    first step, then the second-order multistep midpoint update, and a last step to σ = 0 that lands on x0."""
    ts, sig = timesteps(sampler), sigmas(sampler)
    one = np.float32(1.0)
    alpha = one / np.sqrt(sig * sig + one)  # the VP α_t, σ_t of each σ (the last: 1, 0)
    sigma = sig * alpha
    lam = np.log(alpha[:-1]) - np.log(sigma[:-1])  # λ_t = log α_t − log σ_t (the last, +∞, is never needed)
    x = noise.astype(np.float32)  # init_noise_sigma = 1
    previous = None
    for i, t in enumerate(ts):
        eps = np.asarray(denoise(x, np.full(len(x), t, dtype=np.float32)), dtype=np.float32)
        if on_step is not None:
            on_step(i)
        x0 = (x - sigma[i] * eps) / alpha[i]
        if sig[i + 1] == 0:  # the last step (first order): σ_next = 0, so x = x0
            x = x0
        else:
            h = lam[i + 1] - lam[i]
            phi = alpha[i + 1] * (np.exp(-h) - one)
            x = (sigma[i + 1] / sigma[i]) * x - phi * x0
            if previous is not None:  # second order: D1 = (x0 − x0_prev) / r0, r0 = h_prev / h
                r0 = (lam[i] - lam[i - 1]) / h
                x = x - np.float32(0.5) * phi * ((one / r0) * (x0 - previous))
        previous = x0
        x = x.astype(np.float32)
    return x
