import pytest

from recipelib.deploy.catalog import Experiment, catalog, parse_experiments, presets, resolve_model
from recipelib.errors import ConfigError

NVIDIA_SWEEP = [
    (128, 128), (128, 2048), (128, 4096), (500, 2000), (1000, 1000),
    (2048, 128), (2048, 2048), (5000, 500), (20000, 2000),
]


def test_catalog_has_the_recipes_405b_and_smaller_llamas():
    models = catalog()
    spec = models["meta-llama/Llama-3.1-405B"]
    assert (spec.tp_size, spec.pp_size, spec.quantization, spec.backend, spec.gpus) == (8, 1, "FP8", "tensorrt", 8)
    assert {"meta-llama/Llama-3.1-70B", "meta-llama/Llama-3.1-8B"} <= set(models)


def test_adding_a_model_is_adding_a_file(tmp_path, monkeypatch):
    from recipelib.paths import ROOT

    (tmp_path / "models").mkdir()
    (tmp_path / "models" / "qwen.yaml").write_text("id: Qwen/Qwen3-32B\ntp_size: 2\nbackend: pytorch\n")
    (tmp_path / "experiments").symlink_to(ROOT / "manifests" / "experiments")
    monkeypatch.setenv("RECIPELIB_MANIFESTS", str(tmp_path))
    assert resolve_model("Qwen/Qwen3-32B").backend == "pytorch"
    assert resolve_model("qwen").id == "Qwen/Qwen3-32B"  # by file name too


def test_catalog_file_with_unknown_key_is_refused(tmp_path, monkeypatch):
    (tmp_path / "models").mkdir()
    (tmp_path / "models" / "bad.yaml").write_text("id: a/b\ntp-size: 2\n")
    monkeypatch.setenv("RECIPELIB_MANIFESTS", str(tmp_path))
    with pytest.raises(ConfigError, match="tp-size"):
        resolve_model("a/b", tp_size=1)


def test_explicit_values_override_the_catalog():
    spec = resolve_model("meta-llama/Llama-3.1-405B", tp_size=4, pp_size=2, quantization="none", backend="pytorch")
    assert (spec.tp_size, spec.pp_size, spec.quantization, spec.backend) == (4, 2, None, "pytorch")
    assert resolve_model("meta-llama/Llama-3.1-405B", tp_size=0, quantization="").tp_size == 8


def test_any_hugging_face_id_works_with_explicit_tp():
    spec = resolve_model("mistralai/Mixtral-8x7B-v0.1", tp_size=2, quantization="FP8", backend="pytorch")
    assert spec.gpus == 2
    with pytest.raises(ConfigError) as e:
        resolve_model("mistralai/Mixtral-8x7B-v0.1")
    assert e.value.field == "tp_size" and "not in the catalog" in str(e.value)


@pytest.mark.parametrize(
    "model",
    ["meta-llama/Llama-3.1-405B; rm -rf /", "$(reboot)/x", "../../etc/passwd", "llama", "a/b/c", "a /b", "a/b\n"],
)
def test_model_ids_with_shell_or_path_characters_are_refused(model):
    with pytest.raises(ConfigError) as e:
        resolve_model(model, tp_size=1)
    assert e.value.field == "model"


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"tp_size": 16}, "tp_size"),
        ({"tp_size": 8, "pp_size": 2}, "tp_size"),
        ({"tp_size": -1}, "tp_size"),
        ({"backend": "vllm"}, "backend"),
        ({"quantization": "fp8"}, "quantization"),
    ],
)
def test_bad_model_options_name_the_field(kwargs, field):
    with pytest.raises(ConfigError) as e:
        resolve_model("meta-llama/Llama-3.1-8B", **kwargs)
    assert e.value.field == field


def test_default_experiment_is_the_recipes():
    assert parse_experiments(None) == [Experiment(128, 128, 30000)]
    assert parse_experiments("") == [Experiment(128, 128, 30000)]


def test_nvidia_sweep_preset():
    sweep = presets()["nvidia-sweep"]
    assert [(e.isl, e.osl) for e in sweep] == NVIDIA_SWEEP
    assert parse_experiments("nvidia-sweep") == sweep


def test_string_and_list_forms_agree():
    from_string = parse_experiments("128/128/30000, 2048/128/3000")
    from_list = parse_experiments([{"isl": 128, "osl": 128, "num_requests": 30000},
                                   {"isl": 2048, "osl": 128, "num_requests": 3000}])
    assert from_string == from_list
    assert [e.id for e in from_list] == ["isl128-osl128-n30000", "isl2048-osl128-n3000"]


def test_experiment_ids_include_concurrency_and_streaming():
    (e,) = parse_experiments([{"isl": 1, "osl": 2, "num_requests": 3, "concurrency": 64, "streaming": True}])
    assert e.id == "isl1-osl2-n3-c64-stream"


@pytest.mark.parametrize(
    ("value", "field"),
    [
        ("128/0/30000", "experiments[0].osl"),
        ("128/128/-5", "experiments[0].num_requests"),
        ("128/128/30000,12.5/128/10", "experiments[1].isl"),
        ("128/128", "experiments[0]"),
        ([{"isl": 0, "osl": 1, "num_requests": 1}], "experiments[0].isl"),
        ([{"isl": 1, "osl": 1.5, "num_requests": 1}], "experiments[0].osl"),
        ([{"isl": 1, "osl": 1, "num_requests": "10"}], "experiments[0].num_requests"),
        ([{"isl": 1, "osl": 1, "num_requests": True}], "experiments[0].num_requests"),
        ([{"isl": 1, "osl": 1}], "experiments[0].num_requests"),
        ([{"isl": 1, "osl": 1, "num_requests": 1, "tp": 2}], "experiments[0]"),
        ([{"isl": 1, "osl": 1, "num_requests": 1}, {"isl": 1, "osl": 1, "num_requests": 1}], "experiments[1]"),
        ([], "experiments"),
        ("no-such-preset", "experiments"),
    ],
)
def test_bad_experiments_name_the_item_and_field(value, field):
    with pytest.raises(ConfigError) as e:
        parse_experiments(value)
    assert e.value.field == field
