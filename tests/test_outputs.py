"""Generators that do not return one tensor (``ModelOutput`` / ``BaseOutput`` dataclasses, dicts, tuples, named
tuples) and generators benchmarked through another method (``decode``): the image output is chosen once, in the
model, so every export and runtime reads the same tensor (``harness.prepare.outputs``)."""
from __future__ import annotations

import dataclasses
import textwrap
from collections import OrderedDict
from typing import NamedTuple

import pytest
import torch
from torch import nn

from harness.prepare.outputs import select_output, with_output
from harness.errors import HarnessInputError
from tests.helpers import QUICK_SETTINGS_TOML
from tests.test_project import project  # noqa: F401  (the fixture: a project folder with package `pkg`)
from tests.test_results_fuzz import cli


@dataclasses.dataclass
class Output(OrderedDict):  # the shape of diffusers' BaseOutput / transformers' ModelOutput: a dataclass and a dict
    sample: torch.Tensor = None

    def __post_init__(self) -> None:
        self["sample"] = self.sample


class Pair(NamedTuple):
    image: torch.Tensor
    aux: torch.Tensor


T, U = torch.zeros(1, 2), torch.ones(1, 3)


@pytest.mark.parametrize("result, output, expected", [
    (T, None, T), (Output(sample=T), None, T), ({"x": T, "note": "text"}, None, T), ((T,), None, T),
    (Pair(T, U), "image", T), (Pair(T, U), 1, U), ((T, U), -1, U), ({"a": T, "b": U}, "b", U),
    (Output(sample=U), "sample", U),
])
def test_the_image_is_chosen_by_name_index_or_as_the_only_tensor(result, output, expected):
    assert select_output(result, output, "Gen.forward") is expected


@pytest.mark.parametrize("result, output, message", [
    ((T, U), None, "Gen.forward returned a tuple with 2 tensors (0, 1): declare which one is the image, e.g. output "
                   "= \"sample\" (or an index)"),
    (Pair(T, U), "sample", "Gen.forward returned a Pair without 'sample' (it has: image, aux): set output to one of "
                           "those"),
    ((T, U), 2, "Gen.forward returned 2 outputs: output = 2 is out of range"),
    ({"x": T, "n": 3}, "n", "Gen.forward: output 'n' is not a tensor but int"),
    ({"n": 3}, None, "returned a dict with 0 tensors (none)"),
])
def test_a_choice_that_cannot_be_made_is_one_line(result, output, message):
    with pytest.raises(HarnessInputError) as info:
        select_output(result, output, "Gen.forward")
    assert message in str(info.value) and "\n" not in str(info.value)


class AutoencoderLike(nn.Module):
    """``decode`` returns a BaseOutput-like result; ``forward`` does something else entirely."""

    def __init__(self) -> None:
        super().__init__()
        self.post = nn.Conv2d(4, 4, 1)
        self.up = nn.ConvTranspose2d(4, 3, 2, stride=2)

    def forward(self, x):
        raise RuntimeError("encode+decode: not what is benchmarked")

    def decode(self, z, return_dict: bool = True):
        return Output(sample=torch.tanh(self.up(self.post(z))))


def test_a_method_other_than_forward_keeps_the_models_names_and_signature():
    import inspect

    model = AutoencoderLike()
    keys = list(model.state_dict())
    selected = with_output(model, None, "decode")
    assert selected is model and isinstance(model, AutoencoderLike)
    assert list(model.state_dict()) == keys  # the checkpoint's names: no wrapper prefix
    assert [p for p in inspect.signature(model.forward).parameters] == ["z", "return_dict"]
    out = model(torch.zeros(1, 4, 2, 2))
    assert isinstance(out, torch.Tensor) and out.shape == (1, 3, 4, 4)
    program = torch.export.export(model, (torch.zeros(1, 4, 2, 2),))  # what the exporters trace
    assert len(program.graph_signature.user_outputs) == 1
    with pytest.raises(HarnessInputError, match="has no method 'encode_all'"):
        with_output(AutoencoderLike(), None, "encode_all")


UNET_LIKE = textwrap.dedent('''
    import dataclasses
    from collections import OrderedDict

    import torch
    from torch import nn


    @dataclasses.dataclass
    class UNetOutput(OrderedDict):
        sample: torch.Tensor = None

        def __post_init__(self):
            self["sample"] = self.sample


    class TinyUNet(nn.Module):
        """sample + integer timestep -> UNetOutput(sample=...), as diffusers' UNet2DModel answers."""

        def __init__(self, ch: int = 8):
            super().__init__()
            self.t = nn.Embedding(1000, ch)
            self.inp = nn.Conv2d(1, ch, 3, padding=1)
            self.out = nn.Conv2d(ch, 1, 3, padding=1)

        def forward(self, sample, timestep, return_dict: bool = True):
            h = torch.relu(self.inp(sample) + self.t(timestep)[:, :, None, None])
            out = self.out(h)
            return UNetOutput(sample=out) if return_dict else (out,)


    class TwoHeads(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = nn.Linear(4, 16)

        def forward(self, z):
            h = self.fc(z)
            return {"image": torch.tanh(h).view(-1, 1, 4, 4), "logits": h}
''')


def declare_tiny_unet(project) -> None:
    """The project's ``unet``: TinyUNet with an image and an integer timestep input."""
    (project / "pkg" / "unet.py").write_text(UNET_LIKE)
    (project / "edge-harness.toml").write_text(textwrap.dedent('''
        [models.unet]
        factory = "pkg.unet:TinyUNet"
        inputs = [{ name = "sample", shape = [1, 8, 8] },
                  { name = "timestep", shape = [], kind = "integer", low = 0, high = 1000 }]
    '''))


@pytest.mark.slow
def test_a_model_returning_a_model_output_is_measured_on_its_image(project, tmp_path):
    declare_tiny_unet(project)
    (project / "s.toml").write_text('models = ["unet"]\ntargets = ["x86-cpu"]\n'
                                    'formats = ["torch", "onnx"]\n' + QUICK_SETTINGS_TOML)  # all four: diffusers' below
    out = tmp_path / "run"
    code, err = cli("run", "--suite", str(project / "s.toml"), "--out", str(out), "--no-progress",
                    "--cache", str(tmp_path / "cache"))
    from harness.results.records import parse_records

    records = {r.format: r for r in parse_records(out / "results.jsonl")}
    assert code == 0, (err, {k: r.error for k, r in records.items() if r.status != "ok"})
    assert set(records) == {"torch", "onnx"}
    for record in records.values():  # the same tensor in every format: the exports match PyTorch's
        assert record.measurement("max_abs_error").value < 1e-4, record.format


def test_an_ambiguous_output_stops_the_run_before_any_job_and_output_fixes_it(project, tmp_path):
    (project / "pkg" / "unet.py").write_text(UNET_LIKE)
    config = textwrap.dedent('''
        [models.heads]
        factory = "pkg.unet:TwoHeads"
        inputs = [{ name = "z", shape = [4] }]
    ''')
    (project / "edge-harness.toml").write_text(config)
    (project / "s.toml").write_text('models = ["heads"]\ntargets = ["x86-cpu"]\nformats = ["onnx"]\n'
                                    + QUICK_SETTINGS_TOML)
    code, err = cli("run", "--suite", str(project / "s.toml"), "--out", str(tmp_path / "r"), "--no-progress",
                    "--cache", str(tmp_path / "cache"))
    assert code == 2 and err.count("\n") == 1, err
    assert "TwoHeads.forward returned a dict with 2 tensors (image, logits): declare which one is the image" in err
    assert not (tmp_path / "r" / "results.jsonl").exists()
    from harness.prepare.declared import register_declared
    from harness.prepare.dry_run import dry_run
    from harness.config.project import load_project
    from harness.registry import MODELS

    (project / "edge-harness.toml").write_text(config + 'output = "image"\n')
    MODELS._items.pop("heads", None)
    register_declared(project / "edge-harness.toml", load_project(project / "edge-harness.toml").models)
    dry_run(MODELS.get("heads"))  # runs: one tensor
    assert MODELS.get("heads").builder()(torch.zeros(2, 4)).shape == (2, 1, 4, 4)


diffusers = pytest.importorskip("diffusers", reason="diffusers is not installed (pip install 'edge-harness[diffusers]')")

DIFFUSERS_CONFIG = textwrap.dedent('''
    [models.ddpm_unet]   # diffusers' UNet2DModel by config, with self-attention at 4x4; random weights
    factory = "diffusers:UNet2DModel"
    inputs = [{ name = "sample", shape = [1, 8, 8] },
              { name = "timestep", shape = [], kind = "integer", low = 0, high = 1000 }]
    output = "sample"
    [models.ddpm_unet.kwargs]
    sample_size = 8
    in_channels = 1
    out_channels = 1
    layers_per_block = 1
    block_out_channels = [8, 16]
    down_block_types = ["DownBlock2D", "AttnDownBlock2D"]
    up_block_types = ["AttnUpBlock2D", "UpBlock2D"]
    norm_num_groups = 4
    attention_head_dim = 8

    [models.sd_unet]     # UNet2DConditionModel: Stable Diffusion's shape, text conditioning as a declared input
    factory = "diffusers:UNet2DConditionModel"
    inputs = [{ name = "sample", shape = [4, 8, 8] },
              { name = "timestep", shape = [], kind = "integer", low = 0, high = 1000 },
              { name = "encoder_hidden_states", shape = [7, 16] }]
    output = "sample"
    [models.sd_unet.kwargs]
    sample_size = 8
    in_channels = 4
    out_channels = 4
    layers_per_block = 1
    block_out_channels = [16, 32]
    down_block_types = ["CrossAttnDownBlock2D", "DownBlock2D"]
    up_block_types = ["UpBlock2D", "CrossAttnUpBlock2D"]
    cross_attention_dim = 16
    attention_head_dim = 8
    norm_num_groups = 4

    [models.vae_decode]  # AutoencoderKL, benchmarked through decode(z): its DecoderOutput's sample
    factory = "diffusers:AutoencoderKL"
    method = "decode"
    inputs = [{ name = "z", shape = [4, 4, 4] }]
    [models.vae_decode.kwargs]
    in_channels = 3
    out_channels = 3
    latent_channels = 4
    block_out_channels = [8, 16]
    down_block_types = ["DownEncoderBlock2D", "DownEncoderBlock2D"]
    up_block_types = ["UpDecoderBlock2D", "UpDecoderBlock2D"]
    layers_per_block = 1
    norm_num_groups = 4
    sample_size = 8
''')


def test_diffusers_models_by_config_pass_the_check(project):
    from harness.prepare.declared import register_declared
    from harness.prepare.dry_run import dry_run
    from harness.config.project import load_project
    from harness.zoo import get_model

    (project / "edge-harness.toml").write_text(DIFFUSERS_CONFIG)
    register_declared(project / "edge-harness.toml", load_project(project / "edge-harness.toml").models)
    for name, shape in (("ddpm_unet", (1, 1, 8, 8)), ("sd_unet", (1, 4, 8, 8)), ("vae_decode", (1, 3, 8, 8))):
        dry_run(get_model(name))
        spec = get_model(name)
        inputs = spec.make_inputs(1, 0)
        out = spec.builder(**spec.builder_kwargs)(*(torch.from_numpy(a) for a in inputs.values()))
        assert isinstance(out, torch.Tensor) and out.shape == shape


@pytest.mark.slow
def test_diffusers_models_by_config_measure_in_every_exported_format(project, tmp_path):
    (project / "edge-harness.toml").write_text(DIFFUSERS_CONFIG)
    (project / "s.toml").write_text('models = ["ddpm_unet", "sd_unet", "vae_decode"]\ntargets = ["x86-cpu"]\n'
                                    'formats = ["onnx", "tflite", "executorch"]\n' + QUICK_SETTINGS_TOML
                                    )  # the exports are the point here (QUICK_SETTINGS_TOML: no profile pass)
    out = tmp_path / "run"
    code, err = cli("run", "--suite", str(project / "s.toml"), "--out", str(out), "--no-progress",
                    "--cache", str(tmp_path / "cache"))
    from harness.results.records import parse_records

    records = {(r.model, r.format): r for r in parse_records(out / "results.jsonl")}
    assert code == 0, (err, {k: r.error for k, r in records.items() if r.status != "ok"})
    assert len(records) == 9  # PyTorch eager: test_a_model_returning_a_model_output_is_measured_on_its_image
    for key, record in records.items():
        assert record.measurement("max_abs_error").value < 1e-3, key


@pytest.mark.slow
def test_a_text_conditioned_unet_is_measured_over_its_whole_sampling_loop(project, tmp_path):
    """Stable Diffusion's UNet shape with a sampler: each image's ``encoder_hidden_states`` (seeded like the model's
    inputs) conditions every step of its trajectory, in PyTorch and in the ONNX export alike (before: refused,
    "the sampler's inputs … are not the model's")."""
    anchor = 'output = "sample"\n[models.sd_unet.kwargs]'
    sampler = '\nsampler = { method = "ddim", steps = 4, image_input = "sample", time_input = "timestep", clip = 0.0 }'
    assert anchor in DIFFUSERS_CONFIG
    config = DIFFUSERS_CONFIG.replace(anchor, anchor.replace('"sample"\n', '"sample"' + sampler + "\n"))
    (project / "edge-harness.toml").write_text(config)
    (project / "s.toml").write_text('models = ["sd_unet"]\ntargets = ["x86-cpu"]\nformats = ["torch", "onnx"]\n'
                                    + QUICK_SETTINGS_TOML + "loop_samples = 4\n")
    out = tmp_path / "run"
    code, err = cli("run", "--suite", str(project / "s.toml"), "--out", str(out), "--no-progress",
                    "--cache", str(tmp_path / "cache"))
    from harness.results.records import parse_records

    records = {r.format: r for r in parse_records(out / "results.jsonl")}
    assert code == 0, (err, {k: r.error for k, r in records.items() if r.status != "ok"})
    for record in records.values():
        loop = record.measurement("loop_latency")
        assert loop is not None and loop.samples and "DDIM 4 steps" in loop.note, record.format
        assert record.measurement("loop_step_latency").stats["n"] == 4 * len(loop.samples)
        modelled = {m.metric: m.value for m in record.measurements if m.method == "modelled"}
        # one image over the loop: 4 DDIM steps, each one call's J per image
        assert modelled["loop_energy_per_image"] == pytest.approx(4 * modelled["energy_per_image"])
    psnr = {fmt: r.measurement("loop_psnr").value for fmt, r in records.items()}
    assert psnr["torch"] > 80 and psnr["onnx"] > 60, psnr  # both conditioned as the reference pipeline was


@pytest.mark.slow
def test_an_integer_input_goes_through_every_tflite_int8_path(project, tmp_path):
    """A diffusion timestep (int64) through TFLite full-int8 calibration and PT2E int8 for TFLite: each feeds the
    int32 the TFLite export declares (before: "Got value of type INT64 but expected type INT32")."""
    declare_tiny_unet(project)
    (project / "s.toml").write_text('models = ["unet"]\ntargets = ["x86-cpu"]\nformats = ["tflite"]\n'
                                    + QUICK_SETTINGS_TOML + textwrap.dedent('''
        [[variants]]
        name = "int8"
        method = "tflite-int8"
        calibration_batches = 2
        [[variants]]
        name = "pt2e"
        method = "pt2e-int8"
        calibration_batches = 2
    '''))
    out = tmp_path / "run"
    code, err = cli("run", "--suite", str(project / "s.toml"), "--out", str(out), "--no-progress",
                    "--cache", str(tmp_path / "cache"))
    from harness.results.records import parse_records

    records = {r.variant: r for r in parse_records(out / "results.jsonl")}
    assert code == 0, (err, {k: r.error for k, r in records.items() if r.status != "ok"})
    assert set(records) == {"fp32", "int8", "pt2e"}


def _tiny_diffusers_unet():
    """A two-level diffusers UNet2DModel with attention at 8×8 (its ``Downsample2D``: stride 2, padding 1)."""
    torch.manual_seed(0)
    return with_output(diffusers.UNet2DModel(
        sample_size=8, in_channels=1, out_channels=1, layers_per_block=1, block_out_channels=[8, 16],
        down_block_types=["DownBlock2D", "AttnDownBlock2D"], up_block_types=["AttnUpBlock2D", "UpBlock2D"],
        norm_num_groups=4, attention_head_dim=8), "sample").eval()


def test_pt2e_for_tflite_leaves_a_diffusers_integer_timestep_unobserved():
    """diffusers' UNet2DModel multiplies its int64 timestep by ``torch.ones``; litert-torch's PT2EQuantizer put
    histogram observers on those integer tensors and calibration stopped ("histogram_cpu" not implemented for
    'Long'). They are dropped; the quantized graph runs and stays near fp32."""
    import numpy as np

    from harness.compress.pt2e import _litert_quantizer, quantized_graph

    model = _tiny_diffusers_unet()
    args = (torch.randn(1, 1, 8, 8), torch.tensor([5]))
    rng = np.random.default_rng(0)
    calibration = [{"sample": rng.standard_normal((1, 1, 8, 8)).astype(np.float32), "timestep": np.array([t])}
                   for t in (0, 300, 600, 999)]
    quantized = quantized_graph(model, args, _litert_quantizer(True), calibration, fold=False)
    with torch.no_grad():
        assert float((quantized(*args) - model(*args)).abs().max()) < 0.5 * float(model(*args).abs().max())


def test_explicit_conv_padding_takes_out_only_the_padding_tflite_cannot_hold_and_changes_no_number():
    """diffusers' ``Downsample2D`` (stride 2, padding 1) gets an explicit pad and a padding-0 conv; the stride-1
    3×3 convs (TFLite's SAME) are left as they are; the graph's outputs are bit-identical; the pad keeps the conv's
    module path (so ``keep_float_layers`` still finds the layer)."""
    from harness.compress.pt2e import _module_paths, explicit_conv_padding

    model = _tiny_diffusers_unet()
    args = (torch.randn(1, 1, 8, 8), torch.tensor([5]))
    graph = torch.export.export(model, args).module()
    convs = [n for n in graph.graph.nodes if n.target is torch.ops.aten.conv2d.default]
    assert explicit_conv_padding(graph) == 1
    pads = [n for n in graph.graph.nodes if n.target is torch.ops.aten.pad.default]
    assert len(pads) == 1 and list(pads[0].args[1]) == [1, 1, 1, 1]
    assert any(path.endswith("downsamplers.0.conv") for path in _module_paths(pads[0]))
    padded = [n for n in convs if list(n.args[4] if len(n.args) > 4 else [0, 0]) != [0, 0]]
    assert all(list(n.args[3]) == [1, 1] for n in padded), "only stride-1 SAME convs keep their padding"
    with torch.no_grad():  # the same arithmetic (a kernel for the pre-padded input may round differently)
        torch.testing.assert_close(graph(*args), model(*args), rtol=0, atol=1e-6)
    assert explicit_conv_padding(graph) == 0  # nothing left to take out


@pytest.mark.slow
def test_pt2e_for_tflite_on_a_diffusers_unet_converts_and_runs_near_fp32(tmp_path):
    """litert-torch's converter refused the quantized diffusers UNet ("'tfl.pad' op quantization parameters violate
    the same scale constraint": the pad it makes of a stride-2 conv's padding). With the padding taken out of such
    convs before quantizing, the int8 file converts and runs in LiteRT with most ops int8, within int8's error."""
    import numpy as np

    from harness.analysis.fidelity import psnr
    from harness.compress.pt2e import PT2EInt8
    from harness.runtimes import RuntimeOptions, runtime_class
    from harness.types import Artifact

    model = _tiny_diffusers_unet()
    rng = np.random.default_rng(0)
    inputs = {"sample": rng.standard_normal((1, 1, 8, 8)).astype(np.float32), "timestep": np.array([5])}
    calibration = [{"sample": rng.standard_normal((1, 1, 8, 8)).astype(np.float32), "timestep": np.array([t])}
                   for t in (0, 5, 500)]
    path = tmp_path / "q.tflite"
    info = PT2EInt8().export_file(model, inputs, str(path), "tflite", dict(PT2EInt8.params), calibration)
    assert info["coverage"]["ops_int8_fraction"] > 0.5 and info["coverage"]["op_types"]["PAD"] == 1
    assert info["explicit_conv_padding"] is True  # converted on the second try, with the padding taken out
    runtime = runtime_class("litert")(RuntimeOptions(threads=1))
    runtime.load(Artifact(id="x", format="tflite", path=str(path), bytes=0, model="m", variant="v", batch_size=1,
                          parent_id=None, recipe={}))
    (out,) = runtime.infer(inputs)
    with torch.no_grad():
        reference = model(*(torch.from_numpy(a) for a in inputs.values())).numpy()
    # about 24 dB here, as int8 on this random-weight UNet reads with diffusers' own explicit pad too (a one-off
    # comparison, not a test); a wrong pad would shift the image: the exactness test above
    assert psnr(np.asarray(out, np.float32), reference) > 18.0
