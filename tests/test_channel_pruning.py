"""Structured channel pruning (Torch-Pruning's dependency graph): groups through cat, add and norm layers, the
layers left whole and why, the plan a worker rebuilds from, and students built with other builder arguments."""
from __future__ import annotations

import copy
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from harness.compress import LatentSource, compressor, resolve_params
from harness.compress.channels import restructure
from harness.errors import HarnessInputError
from harness.zoo import get_model, load_model_file
from tests.test_compress import _deconv  # the same BatchNorm chain the other compressors are tested on

SKIPS = Path(__file__).parent / "fixtures" / "skips"


def _images(shape: tuple[int, ...]) -> LatentSource:
    return LatentSource(lambda batch, seed: {"x": np.random.default_rng(seed).standard_normal(
        (batch, *shape)).astype(np.float32)}, 0)


def _prune(model: nn.Module, source: LatentSource, **params) -> tuple[nn.Module, dict]:
    return compressor("prune-channels").compress(model, resolve_params("prune-channels", params), source)


def _out(model: nn.Module, source: LatentSource, batch: int = 3) -> torch.Tensor:
    with torch.no_grad():
        return model(*[torch.from_numpy(a) for a in source.batch(batch, 99).values()])


def _group(info: dict, layer: str) -> dict:
    return next(g for g in info["groups"] if g["layer"] == layer)


def _pix2pix(ch: int = 8) -> nn.Module:
    load_model_file(SKIPS / "pix2pix_unet.py")
    return get_model("pix2pix_unet").builder(ch=ch)


# -- a plain chain ---------------------------------------------------------------------------------------
def test_a_chain_loses_channels_with_its_batch_norms_and_keeps_its_output_layer_whole():
    model, source = _deconv(16), _images((8, 1, 1))
    thin, info = _prune(model, source, amount=0.5)
    assert thin[0].weight.shape == (8, 8, 4, 4)  # ConvTranspose weight: (in, out, k, k): 16 → 8 outputs
    assert thin[1].num_features == 8 and thin[1].running_mean.shape == (8,)
    assert thin[3].weight.shape == (8, 4, 4, 4) and thin[3].bias.shape == (4,) and thin[4].num_features == 4
    assert thin[6].weight.shape == (4, 1, 4, 4)  # the output layer keeps its 1 channel
    assert info["channels"] == {"0": {"kept": 8, "of": 16}, "3": {"kept": 4, "of": 8}}
    assert info["layers_left_whole"] == {"6": "its channels reach the model's output"}
    assert _group(info, "0")["members"] == ["1", "3.in"]  # its BatchNorm, and the next layer's inputs
    assert info["parameters"] < info["parameters_before"]
    assert _out(thin, source).shape == _out(model, source).shape == (3, 1, 16, 16)
    json.dumps(info)  # recorded in the artifact as it is


def test_the_removed_channels_are_those_whose_whole_group_is_least_important():
    """Zero channels 1, 5, 9, 13 of the first layer everywhere they appear: they are the ones removed, and the
    thinner network computes exactly what the original does."""
    model, source = _deconv(16), _images((8, 1, 1))
    dead = [1, 5, 9, 13]
    with torch.no_grad():
        model[0].weight[:, dead] = 0
        model[1].weight[dead] = 0
        model[1].bias[dead] = 0
        model[1].running_mean[dead] = 0
        model[3].weight[dead] = 0
    thin, info = _prune(model, source, amount=0.25)
    assert _group(info, "0")["removed"] == dead
    assert info["channels"]["0"] == {"kept": 12, "of": 16}
    # Layer 3 loses 2 of its 8 channels too; cut those from the original to compare like with like.
    masked = copy.deepcopy(model)
    with torch.no_grad():
        masked[6].weight[_group(info, "3")["removed"]] = 0
    np.testing.assert_allclose(_out(thin, source).numpy(), _out(masked, source).numpy(), atol=1e-5)


def test_multiple_rounds_the_channels_kept_down_and_a_layer_left_empty_stays_whole():
    model, source = _deconv(16), _images((8, 1, 1))
    _, info = _prune(model, source, amount=0.3, multiple=4)
    assert info["channels"] == {"0": {"kept": 8, "of": 16}, "3": {"kept": 4, "of": 8}}  # int(16 × 0.7) = 11 → 8
    _, info = _prune(model, source, amount=0.7, multiple=4)
    assert info["channels"] == {"0": {"kept": 4, "of": 16}}
    assert info["layers_left_whole"]["3"] == ("it would keep no channel: int(8 × (1 − 0.7)) rounded down to a "
                                              "multiple of 4 is 0")
    with pytest.raises(ValueError, match="no layer lost channels \\(6: its channels reach the model's output; 0: it "
                                         "would keep no channel"):
        _prune(model, source, amount=0.9, multiple=4)


def test_importance_criteria_differ_and_are_recorded():
    model, source = _deconv(16), _images((8, 1, 1))
    _, l1 = _prune(model, source, amount=0.5, importance="l1")
    _, fpgm = _prune(model, source, amount=0.5, importance="fpgm")
    assert l1["importance"] == "l1" and fpgm["importance"] == "fpgm"
    assert _group(l1, "0")["removed"] != _group(fpgm, "0")["removed"]
    with pytest.raises(HarnessInputError, match="importance must be one of l1, l2, fpgm"):
        resolve_params("prune-channels", {"importance": "taylor"})


# -- through skips and norms ------------------------------------------------------------------------------
def test_a_pix2pix_unet_is_pruned_through_its_concatenated_skips_and_instance_norms():
    model, source = _pix2pix(8), _images((3, 32, 32))
    thin, info = _prune(model, source, amount=0.5)
    assert {g["layer"] for g in info["groups"]} == {"d1.conv", "d2.conv", "d3.conv", "u1.conv", "u2.conv"}
    assert info["layers_left_whole"] == {"final.1": "its channels reach the model's output"}
    assert thin.d2.norm.num_features == 8 and thin.d2.norm.weight.shape == (8,)
    # u1 reads d3 (32 → 16 channels); u2 reads cat(u1, d2) = 8 + 8; final reads cat(u2, d1) = 4 + 4.
    assert thin.u1.conv.in_channels == 16 and thin.u2.conv.in_channels == 16 and thin.final[1].in_channels == 8
    assert _group(info, "d1.conv")["members"] == ["d2.conv.in", "final.1.in"]  # the skip reaches the final layer
    assert _group(info, "d2.conv")["members"] == ["d2.norm", "d3.conv.in", "u2.conv.in"]
    assert _out(thin, source).shape == (3, 3, 32, 32)


def test_channels_dead_on_both_sides_of_a_concatenation_are_removed_at_the_right_offsets():
    """d1's channels reach the final conv through the second half of a cat (offset 8); u2's through the first
    half. Zero half of each group everywhere it appears: pruning removes exactly those, through both halves, and
    the output is unchanged."""
    model, source = _pix2pix(8), _images((3, 32, 32))
    dead = {"d1": [0, 2, 4, 6], "d2": [1, 3, 5, 7, 9, 11, 13, 15], "d3": list(range(16)),
            "u1": list(range(0, 16, 2)), "u2": [4, 5, 6, 7]}
    with torch.no_grad():
        for block, channels in dead.items():
            layer = getattr(model, block)
            layer.conv.weight[channels] = 0
            if isinstance(layer.norm, nn.InstanceNorm2d):
                layer.norm.weight[channels] = 0
                layer.norm.bias[channels] = 0
        # and where each group is read: d1 → d2 and final (second half of the last cat); d2 → d3 and u2 (second
        # half); d3 → u1; u1 → u2 (first half); u2 → final (first half)
        model.d2.conv.weight[:, dead["d1"]] = 0
        model.final[1].weight[:, [8 + c for c in dead["d1"]]] = 0
        model.d3.conv.weight[:, dead["d2"]] = 0
        model.u2.conv.weight[:, [16 + c for c in dead["d2"]]] = 0
        model.u1.conv.weight[:, dead["d3"]] = 0
        model.u2.conv.weight[:, dead["u1"]] = 0
        model.final[1].weight[:, dead["u2"]] = 0
    thin, info = _prune(model, source, amount=0.5)
    for block, channels in dead.items():
        assert _group(info, f"{block}.conv")["removed"] == channels, block
    np.testing.assert_allclose(_out(thin, source).numpy(), _out(model, source).numpy(), atol=1e-5)


class _Residual(nn.Module):
    """conv_in → [GroupNorm(4) → SiLU → conv_a] + conv_in (a residual add) → GroupNorm(4) → conv_out."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.conv_in = nn.Conv2d(1, 16, 3, padding=1)
        self.norm_a = nn.GroupNorm(4, 16)
        self.conv_a = nn.Conv2d(16, 16, 3, padding=1)
        self.norm_out = nn.GroupNorm(4, 16)
        self.conv_out = nn.Conv2d(16, 1, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.conv_in(x)
        h = h + self.conv_a(nn.functional.silu(self.norm_a(h)))
        return self.conv_out(nn.functional.silu(self.norm_out(h)))


def test_a_residual_add_prunes_both_branches_together_and_group_norm_keeps_its_groups():
    model, source = _Residual().eval(), _images((1, 8, 8))
    thin, info = _prune(model, source, amount=0.5)
    assert thin.conv_in.out_channels == thin.conv_a.out_channels == 8  # the add couples them: one group
    assert [g["layer"] for g in info["groups"]] in (["conv_in"], ["conv_a"])
    assert thin.norm_a.num_channels == thin.norm_out.num_channels == 8 and thin.norm_a.num_groups == 4
    removed = info["groups"][0]["removed"]
    assert [sum(1 for c in removed if c // 4 == g) for g in range(4)] == [2, 2, 2, 2]  # evenly from each group
    assert info["layers_left_whole"] == {"conv_out": "its channels reach the model's output"}
    assert _out(thin, source).shape == (3, 1, 8, 8)


def test_the_zoo_unet_topology_is_pruned_through_time_embeddings_adds_and_cats():
    load_model_file(SKIPS / "unet_untrained.py")
    spec = get_model("unet_untrained")
    model, source = spec.builder(**spec.builder_kwargs), LatentSource(spec.make_inputs, 0)
    thin, info = _prune(model, source, amount=0.5)
    assert info["layers_left_whole"] == {"out.2": "its channels reach the model's output"}
    assert thin.mid.temb.out_features == thin.mid.conv1.out_channels == 16  # the embedding added per channel
    assert thin.dec2.conv1.in_channels == thin.up2.out_channels + thin.down2.conv2.out_channels  # cat
    assert info["parameters"] < 0.3 * info["parameters_before"]
    assert _out(thin, source).shape == (3, 1, 32, 32)


class _SubPixel(nn.Module):
    """SRGAN's / ESPCN's upsampler: a conv to 4× the channels, then a pixel shuffle (r = 2) moves them into space."""

    def __init__(self, ch: int = 16):
        super().__init__()
        self.head = nn.Sequential(nn.Conv2d(3, ch, 3, padding=1), nn.PReLU())
        self.body = nn.Sequential(nn.Conv2d(ch, ch, 3, padding=1), nn.BatchNorm2d(ch), nn.PReLU())
        self.up = nn.Sequential(nn.Conv2d(ch, ch * 4, 3, padding=1), nn.PixelShuffle(2), nn.PReLU())
        self.tail = nn.Conv2d(ch, 3, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.head(x)
        return self.tail(self.up(h + self.body(h)))


def test_a_pixel_shuffle_upsampler_keeps_its_conv_whole_and_the_rest_loses_channels():
    """Torch-Pruning passes a pixel shuffle's channels through one for one: pruning the conv before it indexed
    past the next layer's inputs (IndexError: index 16 is out of bounds for dimension 0 with size 16). That conv
    keeps its channels, named; what feeds it is still pruned, and the thinner model upsamples as before."""
    model, source = _SubPixel().eval(), _images((3, 8, 8))
    thin, info = _prune(model, source, amount=0.5)
    assert info["layers_left_whole"]["up.0"].startswith("its channels are rearranged by a pixel shuffle")
    assert thin.up[0].out_channels == 64 and thin.tail.in_channels == 16
    assert thin.head[0].out_channels == thin.body[0].out_channels == thin.up[0].in_channels == 8  # one group
    assert _out(thin, source).shape == _out(model, source).shape == (3, 3, 16, 16)


@pytest.mark.parametrize("make, shape", [(lambda: _pix2pix(8), (3, 32, 32)), (lambda: _deconv(16), (8, 1, 1)),
                                         (lambda: _Residual().eval(), (1, 8, 8))])
def test_a_skeleton_resized_from_the_recorded_plan_loads_the_pruned_weights(make, shape):
    model, source = make(), _images(shape)
    thin, info = _prune(model, source, amount=0.5)
    structure = json.loads(json.dumps(info["structure"]))  # as stored in the recipe
    skeleton = restructure(make(), structure)
    skeleton.load_state_dict(thin.state_dict())
    assert torch.equal(_out(skeleton.eval(), source), _out(thin, source))


# -- what stays whole, and why ------------------------------------------------------------------------------
class _Unflattened(nn.Module):
    """Linear → (C=8, 4×4) maps → ReLU → ConvT → ConvT, the maps made by an ``nn.Unflatten`` module
    (``"module"``), by ``view(B, -1, 4, 4)`` in forward (``"flexible"``, the DCGAN stem) or by ``view(-1, 8, 4, 4)``
    (``"fixed"``)."""

    def __init__(self, stem: str = "module") -> None:
        super().__init__()
        torch.manual_seed(0)
        self.stem = stem
        self.fc = nn.Linear(6, 8 * 4 * 4)
        self.unflatten = nn.Unflatten(1, (8, 4, 4)) if stem == "module" else None
        self.up1 = nn.ConvTranspose2d(8, 4, 4, 2, 1)
        self.up2 = nn.ConvTranspose2d(4, 1, 4, 2, 1)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        h = self.fc(z)
        if self.unflatten is not None:
            h = self.unflatten(h)
        else:
            h = h.view(z.shape[0], -1, 4, 4) if self.stem == "flexible" else h.view(-1, 8, 4, 4)
        return torch.sigmoid(self.up2(torch.relu(self.up1(torch.relu(h)))))


@pytest.mark.parametrize("stem", ["module", "flexible"])
def test_a_linear_layer_loses_whole_feature_maps_through_unflatten_or_a_view(stem):
    model, source = _Unflattened(stem).eval(), _images((6,))
    thin, info = _prune(model, source, amount=0.5)
    assert info["channels"]["fc"] == {"kept": 4, "of": 8}
    assert thin.fc.weight.shape == (4 * 16, 6)
    assert _group(info, "fc")["members"][0] == ("unflatten (whole maps of 16)" if stem == "module" else
                                                "the reshape in forward (whole maps of 16)")
    if stem == "module":
        assert thin.unflatten.unflattened_size == (4, 4, 4)
    assert thin.up1.weight.shape[0] == 4
    masked = copy.deepcopy(model)
    with torch.no_grad():  # the same as the original with the dropped channels' contributions cut off
        masked.up1.weight[_group(info, "fc")["removed"]] = 0  # ConvTranspose weight dim 0 = input channels
        masked.up2.weight[_group(info, "up1")["removed"]] = 0
    np.testing.assert_allclose(_out(thin, source).numpy(), _out(masked, source).numpy(), atol=1e-5)
    skeleton = restructure(_Unflattened(stem).eval(), json.loads(json.dumps(info["structure"])))
    skeleton.load_state_dict(thin.state_dict())
    assert torch.equal(_out(skeleton, source), _out(thin, source))


def test_a_view_to_a_fixed_channel_count_keeps_the_linear_layer_whole_with_the_rewrite_that_frees_it():
    _, info = _prune(_Unflattened("fixed").eval(), _images((6,)), amount=0.5)
    assert info["layers_left_whole"]["fc"] == (
        "forward reshapes its output to a fixed channel count; write view(B, -1, H, W) (or an "
        "nn.Unflatten(1, (C, H, W)) module) and it loses whole feature maps")
    assert info["channels"] == {"up1": {"kept": 2, "of": 4}}


# -- attention ------------------------------------------------------------------------------------------------
ATTENTION = Path(__file__).parent / "fixtures" / "attention" / "attention_unet.py"


def _attention_unet(block: str) -> nn.Module:
    import importlib.util

    spec = importlib.util.spec_from_file_location("attention_unet", ATTENTION)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    torch.manual_seed(0)
    return module.AttentionUNet(block=block).eval()


def _denoiser_inputs() -> LatentSource:
    return LatentSource(lambda batch, seed: {
        "x": np.random.default_rng(seed).standard_normal((batch, 1, 16, 16)).astype(np.float32),
        "t": np.random.default_rng(seed).integers(0, 1000, batch).astype(np.int64)}, 0)


PRUNE_IN_A_CAPPED_CHILD = """
import json, resource, sys
resource.setrlimit(resource.RLIMIT_AS, (3 << 30, 3 << 30))  # a regression is a MemoryError, not a dead machine
from tests.test_channel_pruning import _attention_unet, _denoiser_inputs, _prune, _out
model, source = _attention_unet(sys.argv[1]), _denoiser_inputs()
thin, info = _prune(model, source, amount=0.5)
assert _out(thin, source).shape == (3, 1, 16, 16)
print(json.dumps({k: info[k] for k in ("channels", "layers_left_whole")}))
"""


@pytest.mark.parametrize("block", ["SelfAttention", "Mixer"])
def test_an_attention_unet_is_pruned_around_its_head_split_in_bounded_memory(block):
    """The head split ``qkv(x).reshape(B, 3, heads, C // heads, H·W)`` once drove Torch-Pruning's walk to 23 GB. Named
    as attention or not, the block's projections and what feeds them stay whole, named; every ResBlock's inner
    channels are still pruned. Run in a child capped at 3 GiB of address space."""
    import subprocess
    import sys

    done = subprocess.run([sys.executable, "-c", PRUNE_IN_A_CAPPED_CHILD, block], capture_output=True, text=True,
                          timeout=300, cwd=Path(__file__).parent.parent)
    assert done.returncode == 0, done.stderr[-2000:]
    info = json.loads(done.stdout.splitlines()[-1])
    whole = info["layers_left_whole"]
    if block == "SelfAttention":
        assert whole["attn.qkv"] == whole["attn.proj"] == (
            "inside attention block 'attn' (SelfAttention), whose heads the planner cannot remove as units")
    else:
        assert whole["attn.qkv"] == ("its channels are split by a reshape in block 'attn' (Mixer) (attention heads, "
                                     "or similar) that the channel planner does not follow")
        assert whole["attn.proj"].startswith("its channels feed attn.qkv")
    assert whole["down"].startswith("its channels ")  # the stream the attention block adds to
    for layer in ("res1.conv1", "res2.conv1", "res3.conv1", "temb.0"):
        assert info["channels"][layer]["kept"] == info["channels"][layer]["of"] // 2, layer


def _diffusers_unet() -> nn.Module:
    UNet2DModel = pytest.importorskip(
        "diffusers", reason="diffusers is not installed (pip install 'edge-harness[diffusers]')").UNet2DModel
    from harness.prepare.outputs import with_output

    torch.manual_seed(0)
    return with_output(UNet2DModel(
        sample_size=16, in_channels=1, out_channels=1, layers_per_block=1, block_out_channels=[16, 32],
        down_block_types=["DownBlock2D", "AttnDownBlock2D"], up_block_types=["AttnUpBlock2D", "UpBlock2D"],
        norm_num_groups=4, attention_head_dim=8), "sample").eval()


def test_a_diffusers_unet_loses_whole_attention_heads_and_resnet_channels_and_rebuilds_from_the_plan():
    model = _diffusers_unet()
    source = LatentSource(lambda batch, seed: {
        "sample": np.random.default_rng(seed).standard_normal((batch, 1, 16, 16)).astype(np.float32),
        "timestep": np.random.default_rng(seed).integers(0, 1000, batch).astype(np.int64)}, 0)
    thin, info = _prune(model, source, amount=0.5)
    block = "down_blocks.1.attentions.0"
    assert info["channels"][f"{block}.heads"] == {"kept": 2, "of": 4}  # 32 channels / head_dim 8
    attention = thin.get_submodule(block)
    assert attention.heads == 2 and attention.to_q.out_features == attention.to_out[0].in_features == 16
    assert attention.to_q.in_features == 32  # the residual stream it reads stays whole
    assert _group(info, f"{block}.heads")["members"] == [f"{block}.to_q.out", f"{block}.to_k.out",
                                                         f"{block}.to_v.out", f"{block}.to_out.0.in"]
    assert info["layers_left_whole"][f"{block}.to_q"] == (
        f"inside attention block '{block}', whose heads are pruned as units")
    assert info["channels"]["down_blocks.0.resnets.0.conv1"] == {"kept": 8, "of": 16}
    # diffusers' Downsample2D asserts on its stored width: the wrapper got the new one
    downsample = thin.get_submodule("down_blocks.0.downsamplers.0")
    assert downsample.channels == downsample.conv.in_channels
    skeleton = restructure(_diffusers_unet(), json.loads(json.dumps(info["structure"])))
    skeleton.load_state_dict(thin.state_dict())
    assert torch.equal(_out(skeleton.eval(), source), _out(thin, source))
    assert _out(thin, source).shape == (3, 1, 16, 16)


@pytest.mark.parametrize("downsample_padding", [0, 1])
def test_the_ddpm_cifar10_topology_is_pruned_and_its_downsamplers_keep_their_own_widths(downsample_padding):
    """google/ddpm-cifar10-32's shape at small widths (4 levels, attention at the second, 2 ResBlocks each, no
    flip_sin_to_cos): a Downsample2D's conv had as many inputs as outputs and keeps fewer of one than of the other;
    its stored ``channels`` (asserted in forward) is its input width. Found by the real-size deep pass ("the pruned
    model no longer runs (AssertionError)"); the plan rebuilds it."""
    UNet2DModel = pytest.importorskip("diffusers", reason="diffusers is not installed").UNet2DModel
    from harness.prepare.outputs import with_output

    def build() -> nn.Module:
        torch.manual_seed(0)
        return with_output(UNet2DModel(
            sample_size=16, in_channels=3, out_channels=3, layers_per_block=2, block_out_channels=[16, 32, 32, 32],
            down_block_types=["DownBlock2D", "AttnDownBlock2D", "DownBlock2D", "DownBlock2D"],
            up_block_types=["UpBlock2D", "UpBlock2D", "AttnUpBlock2D", "UpBlock2D"], norm_num_groups=4,
            attention_head_dim=8, downsample_padding=downsample_padding, flip_sin_to_cos=False, freq_shift=1),
            "sample").eval()

    source = LatentSource(lambda batch, seed: {
        "sample": np.random.default_rng(seed).standard_normal((batch, 3, 16, 16)).astype(np.float32),
        "timestep": np.random.default_rng(seed).integers(0, 1000, batch).astype(np.int64)}, 0)
    thin, info = _prune(build(), source, amount=0.5)
    downsamplers = [m for n, m in thin.named_modules() if n.endswith("downsamplers.0")]
    assert len(downsamplers) == 3 and any(m.conv.in_channels != m.conv.out_channels for m in downsamplers)
    for module in downsamplers:
        assert (module.channels, module.out_channels) == (module.conv.in_channels, module.conv.out_channels)
    skeleton = restructure(build(), json.loads(json.dumps(info["structure"])))
    skeleton.load_state_dict(thin.state_dict())
    assert torch.equal(_out(skeleton.eval(), source), _out(thin, source))
    assert info["parameters"] < 0.5 * info["parameters_before"]


class _CycleGanBlocks(nn.Module):
    """CycleGAN's ResNet generator in miniature: InstanceNorm2d(affine) → ReLU(True) (in place), as its code has it."""

    def __init__(self, ch: int = 8):
        super().__init__()
        self.stem = nn.Sequential(nn.ReflectionPad2d(3), nn.Conv2d(3, ch, 7), nn.InstanceNorm2d(ch, affine=True),
                                  nn.ReLU(True), nn.Conv2d(ch, ch * 2, 3, 2, 1),
                                  nn.InstanceNorm2d(ch * 2, affine=True), nn.ReLU(True))
        self.block = nn.Sequential(nn.ReflectionPad2d(1), nn.Conv2d(ch * 2, ch * 2, 3),
                                   nn.InstanceNorm2d(ch * 2, affine=True), nn.ReLU(True), nn.ReflectionPad2d(1),
                                   nn.Conv2d(ch * 2, ch * 2, 3), nn.InstanceNorm2d(ch * 2, affine=True))
        self.head = nn.Sequential(nn.ConvTranspose2d(ch * 2, ch, 4, 2, 1), nn.InstanceNorm2d(ch, affine=True),
                                  nn.ReLU(True), nn.ReflectionPad2d(3), nn.Conv2d(ch, 3, 7), nn.Tanh())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.stem(x)
        return self.head(h + self.block(h))


def test_in_place_activations_after_instance_norms_do_not_hide_the_norms_from_the_planner():
    """An in-place ReLU after an InstanceNorm rewrote the autograd node Torch-Pruning maps the norm by: the convs were
    thinned, the norms kept their width ("expected input's size at dim=1 to match num_features (64), but got: 32":
    the 256² CycleGAN in the real-size deep pass). The copy is traced out of place; the numbers are the same."""
    model, source = _CycleGanBlocks().eval(), _images((3, 16, 16))
    thin, info = _prune(model, source, amount=0.5)
    assert thin.stem[1].out_channels == thin.stem[2].num_features == thin.stem[2].weight.numel() == 4
    assert info["channels"]["stem.1"] == {"kept": 4, "of": 8}
    assert _out(thin, source).shape == _out(model, source).shape == (3, 3, 16, 16)
    skeleton = restructure(_CycleGanBlocks().eval(), json.loads(json.dumps(info["structure"])))
    skeleton.load_state_dict(thin.state_dict())
    assert skeleton.stem[3].inplace  # the rebuilt model keeps its own code
    assert torch.equal(_out(skeleton.eval(), source), _out(thin, source))


def test_a_model_with_nothing_to_thin_or_no_inputs_is_a_clear_error():
    with pytest.raises(ValueError, match="no layer can lose channels \\(0: its channels reach the model's output"):
        _prune(nn.Sequential(nn.Linear(4, 4)), _images((4,)))
    with pytest.raises(ValueError, match="traces the model on example inputs, and none were given"):
        _prune(_deconv(), None)


def test_a_model_that_cannot_run_on_its_inputs_is_a_clear_error():
    with pytest.raises(ValueError, match="the model does not run on its example inputs \\(RuntimeError"):
        _prune(_deconv(), _images((3, 1, 1)))  # 3 input channels for an 8-channel layer


# -- students built by a builder -----------------------------------------------------------------------------
def _built(ch: int = 8) -> LatentSource:
    model_source = _images((3, 32, 32))
    return LatentSource(model_source.make_inputs, 0, build=lambda **kw: _pix2pix(**{"ch": ch, **kw}))


def test_a_student_from_the_models_own_builder_with_other_arguments_is_distilled():
    teacher, source = _pix2pix(8), _built(8)
    params = resolve_params("distill", {"student_kwargs": {"ch": 4}, "steps": 40, "lr": 3e-3})
    student, info = compressor("distill").compress(teacher, params, source)
    assert student.d1.conv.out_channels == 4 and info["student"] == {"builder": "the model's builder",
                                                                     "kwargs": {"ch": 4}}
    assert info["structure"] == {"rebuild": {"builder": "", "kwargs": {"ch": 4}}}
    assert info["parameters"] < 0.3 * info["parameters_before"]
    curve = info["distillation"]["curve"]
    assert curve[-1][1] < curve[0][1]
    from harness.prepare.torch_model import rebuilt

    skeleton = rebuilt(info["structure"]["rebuild"], source.build)
    skeleton.load_state_dict(student.state_dict())
    assert torch.equal(_out(skeleton.eval(), source), _out(student, source))


def test_a_student_from_a_named_builder_is_distilled_and_its_shape_checked(monkeypatch):
    monkeypatch.syspath_prepend(str(SKIPS))
    teacher, source = _pix2pix(8), _built(8)
    params = resolve_params("distill", {"student_builder": "pix2pix_unet:Pix2PixUNet", "student_kwargs": {"ch": 2},
                                        "steps": 5})
    student, info = compressor("distill").compress(teacher, params, source)
    assert student.d1.conv.out_channels == 2
    assert info["structure"]["rebuild"] == {"builder": "pix2pix_unet:Pix2PixUNet", "kwargs": {"ch": 2}}
    wrong = resolve_params("distill", {"student_builder": "pix2pix_unet:Down", "student_kwargs": {"cin": 3,
                                                                                                  "cout": 3}})
    with pytest.raises(ValueError, match=r"the student's outputs have shapes \[\(2, 3, 16, 16\)\], the teacher's "
                                         r"\[\(2, 3, 32, 32\)\]"):
        compressor("distill").compress(teacher, wrong, source)
    with pytest.raises(HarnessInputError, match="student_builder must look like 'package.module:function'"):
        resolve_params("distill", {"student_builder": "pix2pix_unet"})
    with pytest.raises(HarnessInputError, match="cannot import 'no_such_module'"):
        compressor("distill").compress(teacher, resolve_params("distill", {"student_builder": "no_such_module:f"}),
                                       source)


# -- end to end: every format --------------------------------------------------------------------------------
SKIP_VARIANTS = """
[[variants]]
name = "thin"
method = "prune-channels"
amount = 0.5

[[variants]]
name = "student"
method = "distill"
amount = 0.5
steps = 20

[[variants]]
name = "narrow"
method = "distill"
student_kwargs = { ch = 4 }
steps = 20
models = ["pix2pix_unet"]

[[variants]]
name = "narrow-unet"
method = "distill"
student_kwargs = { base = 8 }
steps = 20
models = ["unet_untrained"]
"""


@pytest.mark.slow
def test_skip_models_are_pruned_and_distilled_and_run_in_every_format(tmp_path):
    """The pix2pix-style UNet and the zoo UNet's topology, thinned three ways, exported to ONNX and TFLite (each
    export checked against the compressed PyTorch model within the export tolerance) and measured in both (PyTorch
    eager runs the same rebuilt module the exports were checked against: left out, for CI's time)."""
    from harness.cli import QUICK_SETTINGS
    from harness.config.paths import targets_dir
    from harness.config.suite import Suite, load_suite
    from harness.results.store import read_records
    from harness.run.runner import SuiteRunner
    from harness.types import RunSettings

    path = tmp_path / "s.toml"
    path.write_text('name = "skips"\nmodels = ["pix2pix_unet", "unet_untrained"]\n' + SKIP_VARIANTS)
    suite = Suite(name="skips", models=("pix2pix_unet", "unet_untrained"), targets=("x86-cpu",),
                  formats=("onnx", "tflite"), batch_sizes=(1,), export_tolerance=1e-4,
                  settings=RunSettings(**QUICK_SETTINGS), variants=load_suite(path).variants)
    runner = SuiteRunner(suite, out_dir=tmp_path / "r", cache_dir=tmp_path / "cache", models_dir=SKIPS,
                         targets_dir=targets_dir(), progress=False)
    records = read_records(runner.run().results_path)
    assert len(records) == runner.job_count() == 2 * 3 * 2 + 2 * 2  # (fp32, thin, student) × 2 formats, narrow
    assert all(r.status == "ok" for r in records), [(r.model, r.variant, r.format, r.error) for r in records
                                                    if r.status != "ok"]
    by = {(r.model, r.variant, r.format): r for r in records}
    for model in ("pix2pix_unet", "unet_untrained"):
        spec = get_model(model)
        full = sum(p.numel() for p in spec.builder(**spec.builder_kwargs).parameters())
        narrow = "narrow" if model == "pix2pix_unet" else "narrow-unet"
        for fmt in ("onnx", "tflite"):
            assert by[(model, "thin", fmt)].measurement("parameters").value < 0.35 * full
            assert by[(model, narrow, fmt)].measurement("parameters").value < 0.35 * full
        # each export reproduces the compressed torch model (checked when exported), and so each other's fidelity
        assert by[(model, "thin", "tflite")].measurement("psnr").value == pytest.approx(
            by[(model, "thin", "onnx")].measurement("psnr").value, abs=0.05)


def test_an_edited_student_builder_file_makes_another_artifact_id(tmp_path, monkeypatch):
    from harness.prepare.compress_steps import _step
    from harness.types import CompressionSpec

    (tmp_path / "my_students.py").write_text("def small(ch=4):\n    return None\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    variant = CompressionSpec("s", "distill", resolve_params("distill", {"student_builder": "my_students:small"}))
    before = _step(variant)[1]["student_builder_sha256"]
    (tmp_path / "my_students.py").write_text("def small(ch=8):\n    return None\n")
    assert len(before) == 64 and _step(variant)[1]["student_builder_sha256"] != before
    plain = CompressionSpec("p", "distill", resolve_params("distill", {}))
    assert "student_builder_sha256" not in _step(plain)[1]  # ids of other variants unchanged


def test_a_recurrent_generator_is_refused_up_front_with_what_to_use_instead():
    """A GRU generator: Torch-Pruning failed inside its index mapping (IndexError); now channel pruning and the
    thinner distillation student refuse it, naming the layer and pointing at student_kwargs."""
    from harness.compress import LatentSource, compressor
    from harness.model_helpers import latent_inputs

    class GruGen(torch.nn.Module):
        def __init__(self, hidden: int = 8) -> None:
            super().__init__()
            self.fc = torch.nn.Linear(8, 16)
            self.gru = torch.nn.GRU(16, hidden, batch_first=True)
            self.out = torch.nn.Linear(hidden, 8)

        def forward(self, z):
            out, _ = self.gru(self.fc(z).unsqueeze(1).repeat(1, 8, 1))
            return torch.tanh(self.out(out)).unsqueeze(1)

    latents = LatentSource(latent_inputs((8,)), 0, build=lambda **kw: GruGen(**kw))
    for method, params in (("prune-channels", {"amount": 0.5, "multiple": 1, "importance": "l1"}),
                           ("distill", None)):
        comp = compressor(method)
        full = {**comp.params, **(params or {}), "steps": 2}
        with pytest.raises(ValueError, match=r"channel pruning does not reach into recurrent layers \(GRU at 'gru'\)"
                                             r": distill into a smaller model instead .*student_kwargs"):
            comp.compress(GruGen(), full, latents)
    student, info = compressor("distill").compress(GruGen(), {**compressor("distill").params, "steps": 2,
                                                              "student_kwargs": {"hidden": 4}}, latents)
    assert student.gru.hidden_size == 4  # the way out the message names works


def test_a_stable_diffusion_shaped_unet_loses_heads_in_self_and_cross_attention():
    """UNet2DConditionModel at a small config: cross-attention's key and value read ``encoder_hidden_states`` (16
    wide), its query the feature map (16 or 32); heads go as units in both kinds of block."""
    diffusers = pytest.importorskip("diffusers", reason="diffusers is not installed (pip install "
                                                        "'edge-harness[diffusers]')")
    from harness.prepare.outputs import with_output

    def build() -> nn.Module:
        torch.manual_seed(0)
        return with_output(diffusers.UNet2DConditionModel(
            sample_size=8, in_channels=4, out_channels=4, layers_per_block=1, block_out_channels=(16, 32),
            down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
            up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"), cross_attention_dim=16, attention_head_dim=8,
            norm_num_groups=4), "sample").eval()

    source = LatentSource(lambda batch, seed: {
        "sample": np.random.default_rng(seed).standard_normal((batch, 4, 8, 8)).astype(np.float32),
        "timestep": np.random.default_rng(seed).integers(0, 1000, batch).astype(np.int64),
        "encoder_hidden_states": np.random.default_rng(seed).standard_normal((batch, 7, 16)).astype(np.float32)}, 0)
    model = build()
    thin, info = _prune(model, source, amount=0.5)
    cross = "down_blocks.0.attentions.0.transformer_blocks.0.attn2"
    assert info["channels"][f"{cross}.heads"] == {"kept": 4, "of": 8}  # this class reads attention_head_dim as heads
    block = thin.get_submodule(cross)
    assert block.to_k.in_features == 16 and block.to_k.out_features == block.to_q.out_features == 8
    assert info["channels"]["down_blocks.0.attentions.0.transformer_blocks.0.attn1.heads"] == {"kept": 4, "of": 8}
    assert info["parameters"] < info["parameters_before"]
    skeleton = restructure(build(), json.loads(json.dumps(info["structure"])))
    skeleton.load_state_dict(thin.state_dict())
    assert torch.equal(_out(skeleton.eval(), source), _out(thin, source))
    assert _out(thin, source).shape == (3, 4, 8, 8)


def test_pt2e_for_tflite_refuses_a_recurrent_layer_up_front_with_what_works():
    """litert-torch's PT2EQuantizer failed inside its GRU annotation (IndexError); the harness names the layer and
    the quantizer that converts it (measured: quantizer = "xnnpack" on this GRU generator gives a TFLite file)."""
    from harness.compress.pt2e import refuse_recurrent_for_litert

    model = nn.Sequential(nn.Linear(4, 8), nn.LSTM(8, 8))
    with pytest.raises(ValueError, match=r"cannot annotate the recurrent layer '1' \(LSTM\): set quantizer = "
                                         r"\"xnnpack\""):
        refuse_recurrent_for_litert(model)
    refuse_recurrent_for_litert(nn.Sequential(nn.Linear(4, 8)))  # nothing to refuse
