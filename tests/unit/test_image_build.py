"""Image builds through Cloud Build: validation, packing, upload, create, follow, against local servers.

Cloud Build and Artifact Registry are played by a local HTTP server (test_imagebuild_fakes); Cloud
Storage (source and logs buckets) by fake-gcs-server, which enforces create-only preconditions.
"""

from __future__ import annotations

import ast
import gzip
import io
import re
import tarfile
import uuid
from dataclasses import replace
from pathlib import Path

import pytest
import yaml
from fakes.google_apis import DIGEST, MACHINE_TYPE
from helpers import REPO

from recipelib.errors import CloudError, ConfigError
from recipelib.image import build as imagebuild
from recipelib.image.build import BuildClients, LogTail, build_image, follow_build, plan_image_build
from recipelib.image.context import (
    context_files,
    dockerfile_sources,
    is_ignored,
    missing_sources,
    pack_context,
    parse_ignore,
)
from recipelib.image.registry import ImageRef
from recipelib.image.trtllm_versions import BUILDABLE, KNOWN_GOOD, buildable_versions, check_version_pair
from recipelib.settings import Settings, validate_settings
from recipelib.views.image_build import show_plan

LAUNCHER = REPO / "launcher"
RECIPE_SUBSTITUTIONS = {"_ARTIFACT_REGISTRY", "_TRTLLM_IMAGE", "_TRTLLM_VERSION", "_BASE_IMAGE"}


def settings_for(project: str, **extra) -> Settings:
    return Settings(project_id=project, region="us-central1",
                    artifact_registry=f"us-central1-docker.pkg.dev/{project}/bench", **extra)


@pytest.fixture
def project() -> str:
    """A project id of the test's own: its default source bucket <project>_cloudbuild is new on the fake GCS."""
    return f"proj-{uuid.uuid4().hex[:10]}"


@pytest.fixture
def clients(apis, gcs, project) -> BuildClients:
    return BuildClients.create(project, cloudbuild_endpoint=apis.url, storage_endpoint=gcs.url,
                               registry_endpoint=apis.url)


def objects(gcs_client, bucket: str) -> list[str]:
    if gcs_client.lookup_bucket(bucket) is None:
        return []
    return [b.name for b in gcs_client.list_blobs(bucket)]


# --------------------------------------------------------------------------------------------------
# The launcher's build files
# --------------------------------------------------------------------------------------------------


def test_requirements_are_pinned_with_hashes_for_every_line():
    text = (LAUNCHER / "requirements.txt").read_text()
    joined = re.sub(r"\\\n", " ", text).splitlines()
    logical = [r.strip() for r in joined if r.strip() and not r.strip().startswith("#")]
    names = set()
    for req in logical:
        m = re.match(r"^([A-Za-z0-9_.-]+)==([^\s;]+)", req)
        assert m, f"not pinned with ==: {req[:80]}"
        assert "--hash=sha256:" in req, f"no hash: {m[1]}"
        assert all(len(h) == 64 for h in re.findall(r"--hash=sha256:([0-9a-f]+)", req)), m[1]
        names.add(m[1].lower().replace("_", "-"))
    assert {"google-cloud-storage", "huggingface-hub", "hf-transfer", "pyyaml"} <= names
    hub = re.search(r"^huggingface-hub==(\d+)\.", text, re.M)
    assert hub and int(hub[1]) < 1, "transformers 4.x in the TensorRT-LLM containers needs huggingface_hub < 1.0"


def test_dockerfile_builds_on_the_chosen_base_and_installs_with_hashes():
    text = (LAUNCHER / "Dockerfile").read_text()
    assert re.search(r"^FROM \$\{BASE_IMAGE\}$", text, re.M)
    assert "--require-hashes" in text and "-r /workload/launcher/requirements.txt" in text
    assert re.search(r"^COPY \*\.py /workload/launcher/$", text, re.M)
    assert missing_sources(text, context_files(LAUNCHER)) == []
    assert [src for _, src in dockerfile_sources(text)] == ["requirements.txt", "*.py"]
    # the prepare_dataset.py the launcher finds is never forced to a path only 0.1x images have
    assert "RECIPE_PREPARE_DATASET" not in text


def test_dockerfile_clones_tensorrtllm_backend_only_for_the_versions_that_have_its_tag():
    """The Dockerfile's split (a `case` on the release) is the table's: 0.* clone, everything else does not."""
    text = (LAUNCHER / "Dockerfile").read_text()
    run = text[text.index('release="${TRTLLM_VERSION#v}"'):text.index("esac\n\n")]
    branches = dict(re.findall(r"^\s{4}(\S+)\) \\\n(.*?);; \\$", run, re.M | re.S))
    assert set(branches) == {"0.*", "*"}
    assert "tensorrtllm_backend.git" in branches["0.*"] and '--branch "v${release}"' in branches["0.*"]
    assert "tensorrtllm_backend" not in branches["*"] and "trtllm-serve" in branches["*"]
    for version, source in BUILDABLE.items():
        clones = version.startswith("0.")
        assert (source.kind == "triton") is clones, version
        assert (source.backend_tag == f"v{version}") is clones, version


def test_cloudbuild_config_passes_what_the_dockerfile_declares():
    cfg = yaml.safe_load((LAUNCHER / "cloudbuild.yaml").read_text())
    assert imagebuild.referenced_substitutions(cfg) == RECIPE_SUBSTITUTIONS
    assert cfg["images"] == ["${_ARTIFACT_REGISTRY}/${_TRTLLM_IMAGE}:${_TRTLLM_VERSION}"]
    assert cfg["options"]["machineType"] == "E2_HIGHCPU_32" and cfg["options"]["diskSizeGb"] == 1000
    assert cfg["timeout"] == "7200s"
    assert [s["args"][0] for s in cfg["steps"]] == ["build", "push"]
    build_args = {a.removeprefix("--build-arg=").split("=", 1)[0] for a in cfg["steps"][0]["args"]
                  if a.startswith("--build-arg=")}
    declared = set(re.findall(r"^ARG (\w+)", (LAUNCHER / "Dockerfile").read_text(), re.M))
    assert build_args == {"BASE_IMAGE", "TRTLLM_VERSION"} and build_args <= declared


def test_the_real_launcher_context_leaves_out_test_stand_ins_and_caches():
    ctx = pack_context(LAUNCHER)
    assert {"Dockerfile", "requirements.txt", "launch.py", "cloudbuild.yaml"} <= set(ctx.files)
    assert not [f for f in ctx.files if f.startswith("testing/") or "__pycache__" in f or f.endswith(".pyc")]
    with tarfile.open(fileobj=io.BytesIO(ctx.data), mode="r:gz") as tar:
        assert sorted(m.name for m in tar.getmembers() if m.isfile()) == list(ctx.files)


# --------------------------------------------------------------------------------------------------
# Packing
# --------------------------------------------------------------------------------------------------


def make_context(root: Path) -> Path:
    (root / "sub" / "deep").mkdir(parents=True)
    (root / "testing").mkdir()
    (root / "__pycache__").mkdir()
    (root / "Dockerfile").write_text("FROM scratch\nCOPY a.py /a.py\n")
    (root / "a.py").write_text("print('a')\n")
    (root / "sub" / "b.py").write_text("b\n")
    (root / "sub" / "deep" / "keep.log").write_text("kept by a negation\n")
    (root / "sub" / "deep" / "drop.log").write_text("dropped\n")
    (root / "testing" / "stand_in.py").write_text("fake\n")
    (root / "__pycache__" / "a.cpython-311.pyc").write_bytes(b"\0")
    (root / ".gcloudignore").write_text("# comment\ntesting/\n__pycache__/\n*.log\n!keep.log\n/sub/b.py\n")
    return root


def test_pack_is_reproducible_and_respects_the_ignore_file(tmp_path):
    ctx_dir = make_context(tmp_path / "ctx")
    first = pack_context(ctx_dir)
    assert first.files == (".gcloudignore", "Dockerfile", "a.py", "sub/deep/keep.log")
    (ctx_dir / "a.py").touch()  # a new mtime: same content, same bytes
    (ctx_dir / "a.py").chmod(0o600)
    second = pack_context(ctx_dir)
    assert second.sha256 == first.sha256 and second.data == first.data
    with tarfile.open(fileobj=io.BytesIO(first.data), mode="r:gz") as tar:
        members = tar.getmembers()
    assert [m.name for m in members] == ["sub", "sub/deep", ".gcloudignore", "Dockerfile", "a.py", "sub/deep/keep.log"]
    assert {(m.mtime, m.uid, m.gid, m.uname) for m in members} == {(0, 0, 0, "")}
    assert first.data[3] & 0x08 == 0 and first.data[4:8] == b"\0\0\0\0"  # gzip header: no file name, no time
    assert gzip.decompress(first.data)[:3] == b"sub"
    (ctx_dir / "a.py").write_text("print('changed')\n")
    assert pack_context(ctx_dir).sha256 != first.sha256


@pytest.mark.parametrize(
    ("pattern", "path", "is_dir", "ignored"),
    [
        ("*.pyc", "x/y/z.pyc", False, True),
        ("testing/", "testing", True, True),
        ("testing/", "testing", False, False),
        ("/top.txt", "top.txt", False, True),
        ("/top.txt", "sub/top.txt", False, False),
        ("sub/*.py", "sub/a.py", False, True),
        ("sub/*.py", "sub/deeper/a.py", False, False),
        ("**/cache", "a/b/cache", True, True),
        ("docs/**", "docs/x/y.md", False, True),
        ("file?.txt", "file1.txt", False, True),
        ("file[0-9].txt", "filex.txt", False, False),
    ],
)
def test_ignore_patterns_follow_gitignore(pattern, path, is_dir, ignored):
    assert is_ignored(parse_ignore(pattern), path, is_dir) is ignored


def test_ignore_file_errors_name_the_line():
    with pytest.raises(ConfigError) as e:
        parse_ignore("ok\n#!include:.gitignore\n")
    assert e.value.field == ".gcloudignore:2"


# --------------------------------------------------------------------------------------------------
# Known-good TensorRT-LLM / Triton pairs
# --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("trtllm", "triton"),
    [("v0.17.0", "25.02-trtllm-python-py3"), ("0.18.2", "25.04-trtllm-python-py3"),
     ("v0.19.0", "25.05-trtllm-python-py3"), ("v0.16.0", "24.12-trtllm-python-py3")],
)
def test_known_good_pairs_pass(trtllm, triton):
    assert check_version_pair(trtllm, triton) is None


def test_a_mismatched_pair_warns_and_names_what_fits():
    warning = check_version_pair("v0.18.0", "25.02-trtllm-python-py3")
    assert warning and "ships TensorRT-LLM 0.17.0.post1" in warning and "25.03-trtllm-python-py3" in warning
    assert "not in the known-good table" in check_version_pair("v0.17.0", "99.01-trtllm-python-py3")
    assert "not a '-trtllm-python-py3'" in check_version_pair("v0.17.0", "25.02-py3")
    assert "not a release number" in check_version_pair("main", "25.02-trtllm-python-py3")
    assert KNOWN_GOOD["25.03"] == "0.18.0"


def test_every_0_1x_entry_has_a_triton_container_that_ships_it():
    for version, source in BUILDABLE.items():
        if source.kind == "triton":
            shipped = [r for r, v in KNOWN_GOOD.items() if v.split(".post")[0] == version]
            assert shipped and f"{shipped[0]}-trtllm-python-py3" in source.source, version
        else:
            assert source.base_image("25.02-trtllm-python-py3") == f"nvcr.io/nvidia/tensorrt-llm/release:{version}"
        assert source.source


@pytest.mark.parametrize("version", ["1.3.0", "v1.1.1", "0.15.0", "main", "0.17.0.post1", "1.2.0rc6"])
def test_a_version_that_cannot_be_built_is_refused_before_any_request(version, apis, clients, gcs_client, project):
    with pytest.raises(ConfigError) as e:
        build_image(settings_for(project, trtllm_version=version), clients)
    assert e.value.field == "TRTLLM_VERSION" and repr(version) in str(e.value)
    assert "v0.17.0" in str(e.value) and "1.2.0" in str(e.value)  # what can be built
    assert apis.requests == [] and objects(gcs_client, f"{project}_cloudbuild") == []


@pytest.mark.parametrize(("version", "base"), [
    ("1.2.0", "nvcr.io/nvidia/tensorrt-llm/release:1.2.0"),
    ("v1.0.0", "nvcr.io/nvidia/tensorrt-llm/release:1.0.0"),
    ("v0.19.0", "nvcr.io/nvidia/tritonserver:25.05-trtllm-python-py3"),
])
def test_the_base_image_follows_the_version(version, base):
    settings = settings_for("proj-base", trtllm_version=version, triton_server_version="25.05-trtllm-python-py3")
    plan = plan_image_build(settings)
    assert plan.base_image == base and plan.substitutions["_BASE_IMAGE"] == base
    assert plan.warnings == ()  # 1.x has no Triton pair to check; 0.19.0 is what 25.05 ships
    assert plan.image == f"us-central1-docker.pkg.dev/proj-base/bench/trtllm:{version}"
    assert plan.trtllm.kind == ("triton" if "tritonserver" in base else "release")


def test_1x_ignores_the_recipes_default_triton_version():
    plan = plan_image_build(settings_for("proj-rel", trtllm_version="1.2.1"))  # TRITON_SERVER_VERSION: 25.02
    assert plan.base_image == "nvcr.io/nvidia/tensorrt-llm/release:1.2.1" and plan.warnings == ()
    assert buildable_versions()[-1] == "1.2.1" and buildable_versions()[0] == "v0.16.0"


def test_plan_carries_the_version_warning_and_the_notebook_shows_it(capsys):
    plan = plan_image_build(settings_for("proj-warn", trtllm_version="v0.19.0"))
    assert plan.warnings and "TRTLLM_VERSION v0.19.0" in plan.warnings[0]
    assert plan.substitutions["_TRTLLM_VERSION"] == "v0.19.0"
    show_plan(plan)
    shown = capsys.readouterr().out
    assert "WARNING: TRTLLM_VERSION v0.19.0 does not match" in shown and "25.05-trtllm-python-py3" in shown
    assert "E2_HIGHCPU_32, 1000 GB disk, timeout 120 min" in shown and "gs://proj-warn_cloudbuild (default)" in shown


# --------------------------------------------------------------------------------------------------
# Validation: every bad input is refused before any request
# --------------------------------------------------------------------------------------------------


def bad_context(tmp_path: Path, kind: str) -> Path:
    ctx = tmp_path / "bad"
    ctx.mkdir()
    (ctx / "launch.py").write_text("print(1)\n")
    config = (LAUNCHER / "cloudbuild.yaml").read_text()
    dockerfile = "FROM x\nCOPY launch.py /w/\n"
    if kind == "no-dockerfile":
        dockerfile = ""
    elif kind == "unknown-substitution":
        config = config.replace("- --file=Dockerfile", "- --file=Dockerfile\n  - --label=${_COMMIT}")
    elif kind == "copies-ignored":
        dockerfile = "FROM x\nCOPY launch.py \\\n     requirements.txt /w/\n"
        (ctx / "requirements.txt").write_text("x==1\n")
        (ctx / ".gcloudignore").write_text("requirements.txt\n")
    elif kind == "config-typo":
        config = config.replace("timeout: 7200s", "timeout: 7200s\nimagess: []")
    elif kind == "image-not-listed":
        config = config.replace("images:\n- ${_ARTIFACT_REGISTRY}/${_TRTLLM_IMAGE}:${_TRTLLM_VERSION}",
                                "images:\n- ${_ARTIFACT_REGISTRY}/other:${_TRTLLM_VERSION}")
    if dockerfile:
        (ctx / "Dockerfile").write_text(dockerfile)
    (ctx / "cloudbuild.yaml").write_text(config)
    return ctx


@pytest.mark.parametrize(
    ("case", "field"),
    [
        ("no-project", "PROJECT_ID"),
        ("registry-shape", "ARTIFACT_REGISTRY"),
        ("registry-scheme", "ARTIFACT_REGISTRY"),
        ("tag", "TRTLLM_VERSION"),
        ("no-dockerfile", "context_dir"),
        ("unknown-substitution", "substitutions._COMMIT"),
        ("unused-substitution", "substitutions._EXTRA"),
        ("copies-ignored", "Dockerfile:2"),
        ("image-not-listed", "config"),
        ("config-typo", "config"),
        ("machine-type", "machine_type"),
        ("disk", "disk_size_gb"),
        ("timeout", "timeout_s"),
        ("source-bucket", "source_bucket"),
    ],
)
def test_bad_inputs_are_refused_before_any_request(case, field, tmp_path, apis, clients, gcs_client, project):
    settings = settings_for(project)
    options: dict = {}
    if case == "no-project":
        settings = replace(settings, project_id=None)
    elif case == "registry-shape":
        settings = replace(settings, artifact_registry="gcr.io/my-project")
    elif case == "registry-scheme":
        settings = replace(settings, artifact_registry=f"https://us-central1-docker.pkg.dev/{project}/bench")
    elif case == "tag":
        settings = replace(settings, trtllm_version="v0.17.0:latest")
    elif case in ("no-dockerfile", "unknown-substitution", "copies-ignored", "image-not-listed", "config-typo"):
        options["context_dir"] = bad_context(tmp_path, case)
    elif case == "unused-substitution":
        options["extra_substitutions"] = {"_EXTRA": "1"}
    elif case == "machine-type":
        options["machine_type"] = "e2-highcpu-32"
    elif case == "disk":
        options["disk_size_gb"] = 100000
    elif case == "timeout":
        options["timeout_s"] = 10
    elif case == "source-bucket":
        options["source_bucket"] = "gs://my-bucket"
    with pytest.raises(ConfigError) as e:
        build_image(settings, clients, **options)
    assert e.value.field == field
    assert apis.requests == []
    assert objects(gcs_client, imagebuild.default_source_bucket(project)) == []


# --------------------------------------------------------------------------------------------------
# Submit and follow
# --------------------------------------------------------------------------------------------------


def test_happy_path_uploads_create_only_builds_and_follows_the_log(apis, clients, gcs_client, project):
    settings = settings_for(project)
    plan = plan_image_build(settings)
    submitted = imagebuild.submit_image_build(plan, clients)

    # the tag was looked up first, then the build created in the region, with the recipe's options
    posts = [path for method, path in apis.requests if method == "POST"]
    assert posts == [f"/v1/projects/{project}/locations/us-central1/builds"]
    assert apis.requests[0][1].startswith(f"/v1/projects/{project}/locations/us-central1/repositories/bench/packages/")
    build = apis.builds[submitted.build_id]
    req = build.request
    assert req["substitutions"] == {
        "_ARTIFACT_REGISTRY": settings.artifact_registry, "_TRTLLM_IMAGE": "trtllm",
        "_TRTLLM_VERSION": "v0.17.0", "_BASE_IMAGE": "nvcr.io/nvidia/tritonserver:25.02-trtllm-python-py3",
    }
    assert MACHINE_TYPE[req["options"]["machineType"]] == "E2_HIGHCPU_32"
    assert int(req["options"]["diskSizeGb"]) == 1000 and req["timeout"] == "7200s"
    assert req["images"] == ["${_ARTIFACT_REGISTRY}/${_TRTLLM_IMAGE}:${_TRTLLM_VERSION}"]  # Cloud Build substitutes
    assert build.image == settings.image and req["steps"][0]["args"][0] == "build"

    # the source: gcloud's layout, the exact generation, the launcher without its test stand-ins
    source = submitted.source
    assert source.bucket == f"{project}_cloudbuild" and re.fullmatch(r"source/\d+\.\d+-[0-9a-f]{32}\.tgz", source.name)
    assert req["source"]["storageSource"] == {"bucket": source.bucket, "object": source.name,
                                              "generation": str(source.generation)}
    assert "Dockerfile" in build.source_files and "launch.py" in build.source_files
    assert not [f for f in build.source_files if f.startswith("testing/")]
    assert gcs_client.bucket(source.bucket).get_blob(source.name).metadata["sha256"] == source.sha256

    # create-only: the same object name is never written twice
    with pytest.raises(CloudError, match="never overwritten"):
        imagebuild.upload_context(clients.storage, source.bucket, pack_context(LAUNCHER), object_name=source.name)

    statuses, lines = [], []
    outcome = follow_build(submitted, clients, on_line=lines.append, on_status=lambda s: statuses.append(s.status),
                           poll_s=0.01)
    assert outcome.success and outcome.done
    assert outcome.digest == build.digest and re.fullmatch(r"sha256:[0-9a-f]{64}", build.digest)
    assert statuses == ["QUEUED", "WORKING", "WORKING", "SUCCESS"]
    assert lines == build.log.split("\n")  # every line once, in order, the unterminated last one included
    base = "ARG BASE_IMAGE=nvcr.io/nvidia/tritonserver:25.02-trtllm-python-py3"
    assert lines[-1] == "DONE" and any(line.endswith(base) for line in lines)
    assert outcome.log_offset == len(build.log.encode())
    assert [s.status for s in outcome.state.steps] == ["SUCCESS", "SUCCESS"]
    assert outcome.state.steps[0].seconds == 41 * 60

    # following again from the saved offset shows nothing twice; from a mid-log offset, only the rest
    again: list[str] = []
    follow_build(submitted.name, clients, on_line=again.append, log_offset=outcome.log_offset, poll_s=0.01)
    assert again == []
    middle = build.log.index("BUILD\n")
    rest: list[str] = []
    follow_build(submitted.name, clients, on_line=rest.append, log_offset=middle, poll_s=0.01)
    assert rest == build.log[middle:].split("\n")


def test_log_tail_holds_back_partial_lines_and_resumes(gcs_client, gcs_bucket):
    blob = gcs_bucket.blob("log-b1.txt")
    tail = LogTail.for_build(gcs_client, f"gs://{gcs_bucket.name}", "b1")
    assert tail.poll() == []  # no log object yet
    text = "first\nsecond\nthi"
    blob.upload_from_string(text.encode())
    assert tail.poll() == ["first", "second"]
    assert tail.poll() == []  # nothing new: a 416 from the server, not an error
    saved = tail.offset
    text += "rd ü\r\nfourth"
    blob.upload_from_string(text.encode())
    assert tail.poll() == ["third ü"]
    resumed = LogTail(gcs_client, gcs_bucket.name, "log-b1.txt", offset=saved)
    assert resumed.poll() == ["third ü"] and resumed.flush() == ["fourth"]
    assert tail.flush() == ["fourth"] and tail.offset == len(text.encode())
    assert tail.flush() == []


def test_log_split_inside_a_multibyte_character_is_decoded_once_whole(gcs_client, gcs_bucket):
    blob = gcs_bucket.blob("log-b2.txt")
    data = "naïve\n".encode()
    tail = LogTail(gcs_client, gcs_bucket.name, "log-b2.txt")
    blob.upload_from_string(data[:3])  # ends inside "ï"
    assert tail.poll() == []
    blob.upload_from_string(data)
    assert tail.poll() == ["naïve"]


def test_logs_in_a_folder_of_the_logs_bucket(gcs_client, gcs_bucket):
    tail = LogTail.for_build(gcs_client, f"gs://{gcs_bucket.name}/team/builds/", "abc")
    assert tail.uri == f"gs://{gcs_bucket.name}/team/builds/log-abc.txt"
    gcs_bucket.blob("team/builds/log-abc.txt").upload_from_string(b"one\n")
    assert tail.poll() == ["one"]


def test_a_failed_build_names_the_step_and_shows_the_last_lines(apis, clients, project):
    apis.outcome = "FAILURE"
    submitted = build_image(settings_for(project), clients)
    lines: list[str] = []
    outcome = follow_build(submitted, clients, on_line=lines.append, poll_s=0.01, keep_lines=5)
    assert outcome.status == "FAILURE" and outcome.done and not outcome.success
    assert outcome.failed_step.id == "build" and outcome.failed_step.seconds == 42
    assert len(outcome.last_lines) == 5 and outcome.last_lines == tuple(lines[-5:])
    message = outcome.message
    assert "ended FAILURE at step #0 'build' after 42s" in message
    assert "step exited with non-zero status: 1" in message
    assert "check TRITON_SERVER_VERSION" in message and "TRTLLM_VERSION (1.x" in message  # "manifest unknown"
    assert "manifest unknown" in message.split("Last log lines:")[1]
    with pytest.raises(imagebuild.ImageBuildError) as e:
        outcome.raise_for_status()
    assert e.value.outcome is outcome and isinstance(e.value, CloudError)


def test_following_stops_at_its_timeout_and_resumes_where_it_stopped(apis, clients, project):
    submitted = build_image(settings_for(project), clients)
    seen: list[str] = []
    queued = follow_build(submitted, clients, on_line=seen.append, timeout_s=0)  # one poll, then stop
    assert not queued.done and queued.status == "QUEUED" and seen == [] and queued.log_offset == 0
    working = follow_build(submitted, clients, on_line=seen.append, timeout_s=0, log_offset=queued.log_offset)
    assert working.status == "WORKING" and "log_offset=" in working.message
    assert seen and working.log_offset > 0
    done = follow_build(submitted, clients, on_line=seen.append, poll_s=0.01, log_offset=working.log_offset)
    assert done.success
    assert seen == apis.builds[submitted.build_id].log.split("\n")


def test_an_existing_tag_is_not_rebuilt_unless_forced(apis, clients, gcs_client, project):
    settings = settings_for(project)
    apis.add_tag(settings.image)
    skipped = build_image(settings, clients)
    assert skipped.skipped and skipped.existing.digest == DIGEST and skipped.build_id is None
    assert [m for m, _ in apis.requests] == ["GET"]
    assert objects(gcs_client, f"{project}_cloudbuild") == []
    with pytest.raises(ConfigError, match="nothing to follow"):
        follow_build(skipped, clients)

    forced = build_image(settings, clients, force=True)
    assert forced.build_id in apis.builds and [m for m, _ in apis.requests] == ["GET", "POST"]


def test_a_custom_source_bucket_must_exist(apis, clients, gcs_client, project):
    with pytest.raises(CloudError, match=r"source bucket gs://nope-[\w-]+ does not exist"):
        build_image(settings_for(project), clients, source_bucket=f"nope-{project}")
    bucket = gcs_client.create_bucket(f"src-{project}")
    submitted = build_image(settings_for(project), clients, source_bucket=bucket.name)
    assert submitted.source.bucket == bucket.name


@pytest.mark.parametrize(
    ("service", "role"),
    [
        ("cloudbuild", "roles/cloudbuild.builds.editor"),
        ("registry", "roles/artifactregistry.reader"),
        ("storage", "roles/storage.objectAdmin"),
    ],
)
def test_a_403_names_the_role_to_ask_for(service, role, apis, gcs, project):
    apis.deny.add(service)
    clients = BuildClients.create(project, cloudbuild_endpoint=apis.url, registry_endpoint=apis.url,
                                  storage_endpoint=apis.url if service == "storage" else gcs.url)
    with pytest.raises(CloudError) as e:
        build_image(settings_for(project), clients)
    text = str(e.value)
    assert text.startswith("permission denied") and role in text
    assert "ask a project owner" in text


def test_a_403_from_a_disabled_api_says_to_enable_it(apis, clients, project):
    apis.disabled.add("registry")
    with pytest.raises(CloudError, match=r"artifactregistry\.googleapis\.com API is not enabled"):
        build_image(settings_for(project), clients)


def test_an_unreadable_log_is_said_once_and_the_status_still_followed(apis, clients, project):
    submitted = build_image(settings_for(project), clients)
    apis.deny.add("storage")
    denied = BuildClients.create(project, storage_endpoint=apis.url, cloudbuild_endpoint=apis.url,
                                 registry_endpoint=apis.url)
    no_log = BuildClients(storage=denied.storage, cloudbuild=clients.cloudbuild, registry=clients.registry)
    lines: list[str] = []
    outcome = follow_build(submitted, no_log, on_line=lines.append, poll_s=0.01)
    assert outcome.success and outcome.lines_seen == 0
    assert len(lines) == 1 and lines[0].startswith("(log not readable, following the status only: permission denied")
    assert "roles/viewer" in lines[0]


def test_reading_a_build_without_permission(apis, clients, project):
    submitted = build_image(settings_for(project), clients)
    apis.deny.add("cloudbuild")
    with pytest.raises(CloudError, match=r"roles/cloudbuild\.builds\.viewer"):
        follow_build(submitted, clients, poll_s=0.01)


def test_substitutions_are_found_and_applied_as_cloud_build_does():
    cfg = {"steps": [{"name": "b", "args": ["$_A", "${_B}-x", "$$_NOT", "$PROJECT_ID"]}],
           "substitutions": {"_C": "default"}, "images": ["r/${_C}"]}
    assert imagebuild.referenced_substitutions(cfg) == {"_A", "_B", "_C"}
    assert imagebuild.apply_substitutions("$_A/${_B}:$$_A", {"_A": "1", "_B": "2"}) == "1/2:$_A"
    imagebuild.check_substitutions(cfg, {"_A": "1", "_B": "2"}, Path("c.yaml"))  # _C has a default
    with pytest.raises(ConfigError) as e:
        imagebuild.check_substitutions(cfg, {"_A": "1"}, Path("c.yaml"))
    assert e.value.field == "substitutions._B"


def test_missing_credentials_say_how_to_get_them(monkeypatch, tmp_path):
    monkeypatch.setenv("GOOGLE_APPLICATION_CREDENTIALS", str(tmp_path / "missing.json"))
    with pytest.raises(CloudError, match="application-default login"):
        imagebuild.default_credentials()


def test_durations_read_at_a_glance():
    assert [imagebuild.format_seconds(s) for s in (42, 2460, 7380)] == ["42s", "41m 0s", "2h 3m"]


def test_image_ref_parts_and_tag_path():
    ref = ImageRef.parse("us-docker.pkg.dev/my-proj/repo/team/trtllm:v0.17.0")
    assert (ref.location, ref.project, ref.repository, ref.image, ref.tag) == (
        "us", "my-proj", "repo", "team/trtllm", "v0.17.0")
    assert ref.tag_path == "projects/my-proj/locations/us/repositories/repo/packages/team%2Ftrtllm/tags/v0.17.0"
    with pytest.raises(ConfigError):
        ImageRef.parse("docker.io/library/python:3")


# --------------------------------------------------------------------------------------------------
# No gcloud, kubectl or helm anywhere in recipelib
# --------------------------------------------------------------------------------------------------

FORBIDDEN_TOOLS = ("gcloud", "kubectl", "helm")
PROCESS_CALLS = {"run", "call", "check_call", "check_output", "Popen", "system", "popen", "getoutput",
                 "getstatusoutput", "create_subprocess_exec", "create_subprocess_shell", "spawnl", "spawnlp",
                 "spawnv", "spawnvp", "execv", "execvp", "execl", "execlp"}


def _process_calls(tree: ast.AST):
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            fn = node.func
            name = fn.attr if isinstance(fn, ast.Attribute) else fn.id if isinstance(fn, ast.Name) else ""
            if name in PROCESS_CALLS:
                yield node


def test_recipelib_never_runs_gcloud_kubectl_or_helm():
    package = REPO / "recipelib"
    offenders = []
    for path in sorted(package.rglob("*.py")):
        tree = ast.parse(path.read_text(), str(path))
        for call in _process_calls(tree):
            words = " ".join(str(n.value) for n in ast.walk(call) if isinstance(n, ast.Constant))
            if any(re.search(rf"\b{tool}\b", words) for tool in FORBIDDEN_TOOLS):
                offenders.append(f"{path.relative_to(REPO)}:{call.lineno}")
        # and no module-level alias that could smuggle a tool name into a call
        for node in ast.walk(tree):
            if isinstance(node, ast.Constant) and isinstance(node.value, str) and re.fullmatch(
                r"(gcloud|kubectl|helm)(\.exe)?", node.value.strip()
            ):
                offenders.append(f"{path.relative_to(REPO)}:{node.lineno} bare {node.value!r}")
    for path in sorted(package.rglob("*.sh")):
        for n, line in enumerate(path.read_text().splitlines(), 1):
            code = line.split("#", 1)[0]
            if re.search(r"(^\s*|[;&|(`]\s*|\$\(\s*)(sudo\s+|exec\s+)?(gcloud|kubectl|helm)\b", code):
                offenders.append(f"{path.relative_to(REPO)}:{n}")
    assert offenders == [], "recipelib must use client libraries, not CLIs: " + ", ".join(offenders)


def test_the_grep_catches_a_subprocess_call_to_gcloud(tmp_path, monkeypatch):
    """The check above is only worth something if it fails on the thing it forbids."""
    fake = tmp_path / "repo"
    (fake / "recipelib").mkdir(parents=True)
    (fake / "recipelib" / "x.py").write_text("import subprocess\nsubprocess.run(['gcloud', 'builds', 'submit'])\n")
    (fake / "recipelib" / "y.sh").write_text("set -e\nout=$(kubectl get pods)\necho 'helm is not used'\n")
    monkeypatch.setattr(f"{__name__}.REPO", fake)
    with pytest.raises(AssertionError) as e:
        test_recipelib_never_runs_gcloud_kubectl_or_helm()
    assert "recipelib/x.py:2" in str(e.value) and "recipelib/y.sh:2" in str(e.value)
    assert "y.sh:3" not in str(e.value)


# --------------------------------------------------------------------------------------------------
# Pull by digest: build-image records it, deploy pins it
# --------------------------------------------------------------------------------------------------


def job_container(settings: Settings) -> dict:
    from recipelib.deploy.benchmark import plan_benchmark
    from recipelib.deploy.render import render_benchmark

    plan = plan_benchmark(settings, "meta-llama/Llama-3.1-405B", user="alice")
    (job,) = [o for o in render_benchmark(plan) if o["kind"] == "Job"]
    (container,) = job["spec"]["template"]["spec"]["containers"]
    return container


def test_a_built_image_is_saved_with_its_digest_and_deploy_pins_it(apis, clients, project, tmp_path):
    from recipelib.settings import load_settings

    settings = settings_for(project, gcs_bucket=f"results-{project}")
    submitted = build_image(settings, clients)
    outcome = follow_build(submitted, clients, poll_s=0.01)
    path = tmp_path / "settings.yaml"
    recorded = imagebuild.record_image(settings, submitted, outcome, path=path)
    pushed = apis.builds[submitted.build_id].digest  # what the push reported, not the registry's other tags
    pinned = f"{settings.image_tag}@{pushed}"
    assert recorded.saved_to == path and recorded.message.startswith(f"Saved {pinned} to {path}")
    assert yaml.safe_load(path.read_text())["TRTLLM_IMAGE_DIGEST"] == pinned

    loaded = load_settings(path=path, environ={})
    assert loaded.image == pinned and loaded.image_tag == settings.image_tag
    container = job_container(loaded)
    assert container["image"] == pinned and container["imagePullPolicy"] == "IfNotPresent"

    # another tag (or registry) than the one the digest was read for: back to the tag, pulled Always
    other = load_settings(path=path, environ={"TRTLLM_VERSION": "1.2.0"})
    assert other.image == f"us-central1-docker.pkg.dev/{project}/bench/trtllm:1.2.0"
    container = job_container(other)
    assert "@" not in container["image"] and container["imagePullPolicy"] == "Always"


def test_an_existing_tag_is_pinned_to_the_version_the_registry_names(apis, clients, project, tmp_path):
    settings = settings_for(project)
    apis.add_tag(settings.image_tag, "sha256:" + "cd" * 32)
    skipped = build_image(settings, clients)
    recorded = imagebuild.record_image(settings, skipped, None, path=tmp_path / "s.yaml")
    assert recorded.settings.image == f"{settings.image_tag}@sha256:{'cd' * 32}" and recorded.ready


def test_nothing_is_saved_before_the_image_exists_nor_for_the_sandbox(apis, clients, project, tmp_path):
    settings = settings_for(project)
    submitted = build_image(settings, clients)
    queued = follow_build(submitted, clients, timeout_s=0)
    path = tmp_path / "s.yaml"
    recorded = imagebuild.record_image(settings, submitted, queued, path=path)
    assert not recorded.ready and "not built yet" in recorded.message and not path.exists()
    done = follow_build(submitted, clients, poll_s=0.01)
    sandbox = replace(settings, sandbox=True)
    recorded = imagebuild.record_image(sandbox, submitted, done)
    assert recorded.ready and recorded.saved_to is None and "never saved as yours" in recorded.message
    assert "@sha256:" in recorded.settings.image
    kept = imagebuild.record_image(settings, submitted, done, save=False, path=path)
    assert "save=False" in kept.message and not path.exists()


def test_a_digest_is_only_recorded_for_the_configured_tag_and_in_digest_form():
    settings = settings_for("proj-pin")
    with pytest.raises(ConfigError) as e:
        imagebuild.pin(settings, "us-central1-docker.pkg.dev/proj-pin/bench/trtllm:other", "sha256:" + "0" * 64)
    assert e.value.field == "image"
    with pytest.raises(ConfigError) as e:
        imagebuild.pin(settings, settings.image_tag, "md5:abc")
    assert e.value.field == "digest"
    with pytest.raises(ConfigError) as e:
        validate_settings(replace(settings, trtllm_image_digest=f"{settings.image_tag}@sha256:short"))
    assert e.value.field == "TRTLLM_IMAGE_DIGEST"
