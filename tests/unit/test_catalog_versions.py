"""The catalog per TensorRT-LLM version (checkpoint, backend) and the sizes it checks against the model."""

from __future__ import annotations

import csv
import logging
from importlib import resources

import pytest
import yaml
from helpers import REPO

from recipelib.deploy.catalog import ModelSpec, catalog, resolve_model
from recipelib.deploy.flows import WEIGHT_BYTES, gpu_memory_bytes, parse_version
from recipelib.errors import ConfigError

LLAMAS = {
    "meta-llama/Llama-3.1-405B": "nvidia/Llama-3.1-405B-Instruct-FP8",
    "meta-llama/Llama-3.1-70B": "nvidia/Llama-3.1-70B-Instruct-FP8",
    "meta-llama/Llama-3.1-8B": "nvidia/Llama-3.1-8B-Instruct-FP8",
}


# --- flows: which checkpoint and backend each version runs --------------------------------------------------


@pytest.mark.parametrize("model", sorted(LLAMAS))
@pytest.mark.parametrize("version", ["v0.16.0", "v0.17.0", "0.17.0.post1", "0.21.0"])
def test_before_1_0_the_engine_flow_quantizes_the_base_checkpoint(model: str, version: str) -> None:
    spec = resolve_model(model, trtllm_version=version)
    assert (spec.backend, spec.checkpoint, spec.quantization) == ("tensorrt", None, "FP8")


@pytest.mark.parametrize("model", sorted(LLAMAS))
@pytest.mark.parametrize("version", ["1.0.0", "v1.2.0", "1.2.0rc8"])
def test_from_1_0_the_pytorch_flow_loads_nvidias_prequantized_instruct_checkpoint(model: str, version: str) -> None:
    spec = resolve_model(model, trtllm_version=version)
    assert (spec.backend, spec.checkpoint, spec.quantization) == ("pytorch", LLAMAS[model], "FP8")
    assert spec.id == model  # what is measured keeps its name; the checkpoint is what the pod downloads


def test_an_explicit_backend_picks_its_flow_whatever_the_version() -> None:
    engine = resolve_model("meta-llama/Llama-3.1-405B", trtllm_version="1.2.0", backend="tensorrt")
    assert (engine.backend, engine.checkpoint) == ("tensorrt", None)
    torch = resolve_model("meta-llama/Llama-3.1-405B", trtllm_version="v0.17.0", backend="pytorch")
    assert (torch.backend, torch.checkpoint) == ("pytorch", "nvidia/Llama-3.1-405B-Instruct-FP8")
    # unquantized on the PyTorch flow: the base weights, not the FP8 checkpoint
    bf16 = resolve_model("meta-llama/Llama-3.1-8B", trtllm_version="1.2.0", quantization="none")
    assert (bf16.backend, bf16.checkpoint, bf16.quantization) == ("pytorch", None, None)
    mine = resolve_model("meta-llama/Llama-3.1-8B", trtllm_version="1.2.0", checkpoint="me/llama-8b-fp8")
    assert mine.checkpoint == "me/llama-8b-fp8"


def test_without_a_version_the_catalog_reads_as_its_files_say() -> None:
    """The existing contract: no version, no flow applied (the 0.1x recipe's values)."""
    assert resolve_model("meta-llama/Llama-3.1-405B") == catalog()["meta-llama/Llama-3.1-405B"]


@pytest.mark.parametrize(
    ("kwargs", "field", "words"),
    [
        ({"trtllm_version": "1.3.0", "backend": "tensorrt"}, "backend", "through 1.2"),
        ({"trtllm_version": "v0.16.0", "backend": "pytorch"}, "backend", "from 0.17"),
        ({"trtllm_version": "1.2.0", "quantization": "NVFP4"}, "checkpoint", "pre-quantized NVFP4"),
        ({"trtllm_version": "latest"}, "TRTLLM_VERSION", "release number"),
        ({"trtllm_version": "v0.17.0 "}, "TRTLLM_VERSION", "release number"),
        ({"checkpoint": "nvidia/x; rm -rf /"}, "checkpoint", "Hugging Face model id"),
    ],
)
def test_flows_a_version_does_not_have_are_refused(kwargs: dict, field: str, words: str) -> None:
    with pytest.raises(ConfigError) as e:
        resolve_model("meta-llama/Llama-3.1-405B", **kwargs)
    assert e.value.field == field and words in str(e.value)


def test_every_catalog_flow_checkpoint_is_a_hub_id_with_its_source() -> None:
    for path in sorted((REPO / "manifests" / "models").glob("*.yaml")):
        text = path.read_text()
        for flow in yaml.safe_load(text).get("flows", []):
            repo = flow.get("checkpoint")
            if repo:
                assert f"huggingface.co/{repo}" in text, f"{path.name}: no source for {repo}"


def test_parse_version() -> None:
    assert parse_version("v0.17.0") == (0, 17) and parse_version("1.2.0rc8") == (1, 2)
    assert parse_version("0.17.0.post1") == (0, 17) and parse_version(None) is None and parse_version("") is None


# --- sizes against the model ----------------------------------------------------------------------------------


def test_tp_3_for_405b_is_refused_naming_tp_size_and_the_choices() -> None:
    with pytest.raises(ConfigError) as e:
        resolve_model("meta-llama/Llama-3.1-405B", tp_size=3)
    assert e.value.field == "tp_size" and "128 attention heads" in str(e.value) and "[1, 2, 4, 8]" in str(e.value)


def test_pp_that_does_not_divide_the_layers_is_refused_before_1_0() -> None:
    """126 layers: pp 4 leaves 2 over, which 0.1x's ``num_layers // pp_size`` would drop."""
    with pytest.raises(ConfigError) as e:
        resolve_model("meta-llama/Llama-3.1-405B", tp_size=2, pp_size=4, trtllm_version="v0.17.0")
    assert e.value.field == "pp_size" and "126 layers" in str(e.value) and "[1, 2, 3, 6, 7]" in str(e.value)
    assert resolve_model("meta-llama/Llama-3.1-405B", tp_size=4, pp_size=2, trtllm_version="v0.17.0").gpus == 8
    # 1.x splits layers unevenly (first stages take one more): only more stages than layers is refused
    assert resolve_model("meta-llama/Llama-3.1-405B", tp_size=2, pp_size=4, trtllm_version="1.2.0").pp_size == 4
    with pytest.raises(ConfigError, match="pipeline stages") as e:
        ModelSpec(id="a/b", tp_size=1, pp_size=4, layers=2)
    assert e.value.field == "pp_size"


def test_405b_bf16_at_tp_4_on_h200_does_not_fit() -> None:
    with pytest.raises(ConfigError) as e:
        resolve_model("meta-llama/Llama-3.1-405B", tp_size=4, quantization="none", gpu="H200")
    message = str(e.value)
    assert e.value.field == "tp_size" and "BF16" in message and "4 x H200" in message and "tp_size 8" in message
    # the same weights on 8 GPUs fit; FP8 halves them and fits 4
    assert resolve_model("meta-llama/Llama-3.1-405B", tp_size=8, quantization="none", gpu="H200").gpus == 8
    assert resolve_model("meta-llama/Llama-3.1-405B", tp_size=4, gpu="H200").quantization == "FP8"
    # 70B BF16 is 141 GB: not one H200, but one H200 in FP8 as NVIDIA's perf-overview runs it
    with pytest.raises(ConfigError, match="GiB of weights"):
        resolve_model("meta-llama/Llama-3.1-70B", tp_size=1, quantization="none", gpu="H200")
    assert resolve_model("meta-llama/Llama-3.1-70B", tp_size=1, gpu="H200").gpus == 1


def test_memory_check_reads_the_launchers_datasheet_and_the_default_node() -> None:
    h200, h100 = gpu_memory_bytes("nvidia-h200-141gb"), gpu_memory_bytes("H100")
    assert h200 == 141 * 2**30 and h100 == 80 * 2**30 and gpu_memory_bytes("MI300X") is None
    # 405B FP8 fits 8 x H100 but not 4 (406 GB > 4 x 72 GiB); the node of values.yaml is an H200
    assert resolve_model("meta-llama/Llama-3.1-405B", gpu="H100").gpus == 8
    with pytest.raises(ConfigError, match="4 x H100"):
        resolve_model("meta-llama/Llama-3.1-405B", tp_size=4, gpu="H100")
    assert resolve_model("meta-llama/Llama-3.1-405B", tp_size=4).tp_size == 4


def test_an_uncatalogued_model_is_checked_where_it_can_be_and_says_what_was_not(caplog) -> None:
    with caplog.at_level(logging.WARNING):
        spec = resolve_model("mistralai/Mixtral-8x7B-v0.1", tp_size=2, quantization="FP8", backend="pytorch")
    assert spec.gpus == 2
    said = caplog.text
    assert "attention_heads and layers unknown" in said and "parameters_billion unknown" in said
    with pytest.raises(ConfigError) as e:  # parameters given: memory is checked
        resolve_model("some-org/big-model", tp_size=1, parameters_billion=405)
    assert e.value.field == "tp_size" and "GiB of weights" in str(e.value)
    with pytest.raises(ConfigError) as e:  # heads given: tp is checked
        resolve_model("some-org/model", tp_size=4, attention_heads=6)
    assert e.value.field == "tp_size"
    caplog.clear()
    with caplog.at_level(logging.WARNING):
        resolve_model("some-org/model", tp_size=1, parameters_billion=7, gpu="MI300X")
    assert "no datasheet figures for GPU 'MI300X'" in caplog.text


def test_catalog_shapes_agree_with_the_speed_of_light_table() -> None:
    """Both cite the models' config.json; a typo in either shows here."""
    with resources.files("recipelib").joinpath("data", "model_specs.csv").open() as f:
        rows = {r["family"]: r for r in csv.DictReader(line for line in f if not line.startswith("#"))}
    for model, spec in catalog().items():
        row = rows[model.rsplit("-", 1)[-1]]
        assert (spec.attention_heads, spec.kv_heads, spec.layers) == (int(row["heads"]), int(row["kv_heads"]),
                                                                      int(row["layers"]))
        assert spec.parameters_billion == pytest.approx(float(row["params_b"]))


def test_weight_bytes_agree_with_the_speed_of_light_bound() -> None:
    from recipelib.results.speed_of_light import WEIGHT_BYTES as SOL

    for quantization, size in WEIGHT_BYTES.items():
        assert SOL[quantization] == size
