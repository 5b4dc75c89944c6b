"""Diffusion models for the zoo: small diffusers UNets, a noisy copy and an independent one.

The LLaMA and GPT-2 cases exercise the layer engine; these exercise the
generic comparison (`provenance.compare.generic`), which takes over for
checkpoints that no transformer role map fits. A UNet of the Stable
Diffusion design (`UNet2DConditionModel`: cross-attention down block, plain
down block, mid block, plain and cross-attention up blocks; widths 64 and
128) is built by diffusers from a seed, untrained (random initialisation),
and saved as diffusers saves it (config.json + safetensors). Cases:

- `diffusion-noise`: every tensor of the UNet plus Gaussian noise of 10% of
  that tensor's std (cosine about 0.995 with its source): `derived`;
- `neg-diffusion-seed`: the same design from another seed: `same-architecture`.

Also used by tests/test_generic.py (with `vit_state` for a ViT), so the
tests and the zoo build the same models. Needs the `diffusers` package (the
`test` extra of pyproject.toml).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch

UNET_CONFIG: dict[str, Any] = dict(
    sample_size=8, in_channels=4, out_channels=4, layers_per_block=1, block_out_channels=(64, 128),
    down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"), up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"),
    cross_attention_dim=64, attention_head_dim=8, norm_num_groups=16)
VIT_CONFIG: dict[str, Any] = dict(hidden_size=64, num_hidden_layers=2, num_attention_heads=4, intermediate_size=128,
                                  image_size=32, patch_size=8)
NOISE = 0.10


def unet_state(seed: int, **overrides: Any) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """A randomly initialised diffusers UNet2DConditionModel: its state dict and config.json contents."""
    from diffusers import UNet2DConditionModel

    torch.manual_seed(seed)
    model = UNet2DConditionModel(**{**UNET_CONFIG, **overrides})
    config = json.loads(json.dumps(dict(model.config), default=list))
    return {k: v.detach().clone().contiguous() for k, v in model.state_dict().items()}, config


def vit_state(seed: int, **overrides: Any) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """A randomly initialised transformers ViTModel: its state dict and config.json contents."""
    from transformers import ViTConfig, ViTModel

    torch.manual_seed(seed)
    config = ViTConfig(**{**VIT_CONFIG, **overrides})
    model = ViTModel(config)
    return {k: v.detach().clone().contiguous() for k, v in model.state_dict().items()}, config.to_dict()


def with_noise(state: dict[str, torch.Tensor], scale: float, seed: int) -> dict[str, torch.Tensor]:
    """Every tensor plus Gaussian noise of `scale` times its own std (constant tensors stay as they are)."""
    generator = torch.Generator().manual_seed(seed)
    noisy = {}
    for name, value in state.items():
        std = float(value.float().std()) if value.numel() > 1 else 0.0
        noise = torch.randn(value.shape, generator=generator) * (scale * std)
        noisy[name] = (value.float() + noise).to(value.dtype).contiguous()
    return noisy


def save(directory: Path, state: dict[str, torch.Tensor], config: dict[str, Any] | None,
         filename: str = "model.safetensors") -> Path:
    """Write the state dict (and config.json, when given) as diffusers and transformers save them."""
    from safetensors.torch import save_file

    directory.mkdir(parents=True, exist_ok=True)
    save_file(state, str(directory / filename))
    if config is not None:
        (directory / "config.json").write_text(json.dumps(config, indent=1, sort_keys=True, default=str))
    return directory


def build_diffusion_cases(zoo, cfg: dict) -> None:
    """Add the UNets to `zoo` (a bench.zoo.build.Zoo) and the two diffusion cases."""
    from .models import relative_change

    made: dict[str, dict[str, torch.Tensor]] = {}

    def model(name: str, recipe: dict, state: dict[str, torch.Tensor], config: dict[str, Any], parents=()) -> None:
        save(zoo.out / "models" / name, state, config)
        made[name] = state
        zoo.models[name] = {"name": name, "path": f"models/{name}", "family": "unet", "params": dict(UNET_CONFIG),
                            "recipe": recipe, "parents": list(parents), "info": {}}
        zoo.built += 1

    base, config = unet_state(0)
    model("unet-s0", {"unet": "random init", "seed": 0}, base, config)
    other, _ = unet_state(1)
    model("unet-s1", {"unet": "random init", "seed": 1}, other, config)
    model("unet-s0-noise10", {"noise": NOISE, "seed": 2}, with_noise(base, NOISE, 2), config, parents=("unet-s0",))

    def case(type_: str, candidate: str, reference: str, verdict: str, note: str) -> None:
        positive = verdict in ("identical", "derived", "assembled")
        zoo.cases.append({
            "id": f"unet/{type_}:{candidate}~{reference}", "type": type_, "family": "unet",
            "candidate": candidate, "reference": reference, "verdict": verdict, "acceptable": [verdict],
            "positive": positive, "layer_changing": False, "layer_map": None, "layer_sources": None,
            "max_logit_diff": None, "relative_change": relative_change(made[candidate], made[reference]), "note": note})

    case("diffusion-noise", "unet-s0-noise10", "unet-s0", "derived",
         f"diffusers UNet, every tensor plus noise of {NOISE:.0%} of its std")
    case("neg-diffusion-seed", "unet-s1", "unet-s0", "same-architecture",
         "diffusers UNet of the same design from another seed")
