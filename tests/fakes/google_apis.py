"""Local stand-ins for the Google APIs an image build talks to, for test_imagebuild*.py and the notebook test.

``FakeGoogleAPIs`` is one threaded HTTP server answering the REST paths google-cloud-build (transport
"rest") and recipelib.image.registry call: ``POST /v1/projects/P/locations/L/builds`` (an Operation whose
metadata carries the Build), ``GET /v1/projects/P/locations/L/builds/ID`` (the Build, advancing one
stage per poll: QUEUED -> WORKING -> SUCCESS or FAILURE) and Artifact Registry's
``GET /v1/projects/P/locations/L/repositories/R/packages/IMAGE/tags/TAG`` (200 or 404). Enums go out as
integers, as the real API sends them to a REST client. Errors use Google's JSON envelope.

While a build "runs", the fake reads the uploaded source tarball from fake-gcs-server (the real
storage API) and appends Cloud Build-style lines to ``log-<id>.txt`` in the logs bucket there, ending
some writes mid-line, as a live log object does.

A successful build reports what it pushed as the REST API does: ``results.images[]`` with ``name`` (the
reference as given to ``docker push``), ``digest`` and ``pushTiming``, and ``results.buildStepImages`` (one
digest per step), the fields of google-cloud-build's ``Results`` and ``BuiltImage`` messages
(google/devtools/cloudbuild/v1/cloudbuild.proto, read in google-cloud-build 3.43). The pushed digest is
the sha256 of what was built (the source tarball and the image name), so two builds of different sources
never share one; the pushed tag then points at it in the Artifact Registry half of the fake.

It also answers Cloud Storage upload paths with a 403 when told to (``deny={"storage"}``), so a client
pointed at it sees what a user without storage permissions sees.
"""

from __future__ import annotations

import hashlib
import io
import json
import re
import tarfile
import threading
import uuid
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import unquote, urlsplit

# google.devtools.cloudbuild.v1.Build.Status and BuildOptions.MachineType, as integers.
STATUS = {"QUEUED": 1, "WORKING": 2, "SUCCESS": 3, "FAILURE": 4, "PENDING": 10}
MACHINE_TYPE = {6: "E2_HIGHCPU_32", 5: "E2_HIGHCPU_8"}
DIGEST = "sha256:" + "ab" * 32
"""The digest ``add_tag`` gives a tag a test creates by hand; a build's push has a digest of its own."""

_BUILDS = re.compile(r"^/v1/projects/(?P<project>[^/]+)/locations/(?P<location>[^/]+)/builds$")
_BUILD = re.compile(r"^/v1/projects/(?P<project>[^/]+)/locations/(?P<location>[^/]+)/builds/(?P<id>[^/]+)$")
_TAG = re.compile(
    r"^/v1/projects/(?P<project>[^/]+)/locations/(?P<location>[^/]+)/repositories/(?P<repo>[^/]+)"
    r"/packages/(?P<image>[^/]+)/tags/(?P<tag>[^/]+)$"
)


def error_envelope(code: int, message: str, status: str, reason: str | None = None) -> dict[str, Any]:
    err: dict[str, Any] = {"code": code, "message": message, "status": status}
    if reason:
        err["details"] = [{"@type": "type.googleapis.com/google.rpc.ErrorInfo", "reason": reason}]
    return {"error": err}


@dataclass
class FakeBuild:
    id: str
    project: str
    location: str
    request: dict[str, Any]
    outcome: str
    logs_bucket: str
    source_files: list[str] = field(default_factory=list)
    polls: int = 0
    status: str = "QUEUED"
    steps: list[dict[str, Any]] = field(default_factory=list)
    log: str = ""
    digest: str = ""
    """What the push step reports, ``sha256:...`` of the source tarball and the image name."""

    @property
    def image(self) -> str:
        """The first image, substituted server-side as Cloud Build does."""
        subs = self.request.get("substitutions", {})
        return re.sub(r"\$\{(_[A-Z0-9_]+)\}", lambda m: subs[m[1]], self.request["images"][0])


class FakeGoogleAPIs:
    """One server for Cloud Build and Artifact Registry; see the module docstring."""

    def __init__(self, storage_client: Any, logs_bucket: str) -> None:
        self.storage = storage_client
        self.logs_bucket = logs_bucket
        self.requests: list[tuple[str, str]] = []
        self.builds: dict[str, FakeBuild] = {}
        self.tags: dict[str, str] = {}  # "project/location/repo/image:tag" -> version name
        self.deny: set[str] = set()  # "cloudbuild", "registry", "storage": answer 403
        self.disabled: set[str] = set()  # answer 403 SERVICE_DISABLED
        self.outcome = "SUCCESS"
        self.lock = threading.Lock()
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def do_GET(self) -> None:
                fake.handle(self, "GET")

            def do_POST(self) -> None:
                fake.handle(self, "POST")

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_port}"

    def start(self) -> FakeGoogleAPIs:
        self.thread.start()
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def add_tag(self, image_ref: str, digest: str = DIGEST) -> None:
        host, project, repo, rest = image_ref.split("/", 3)
        location = host.removesuffix("-docker.pkg.dev")
        self.tags[f"{project}/{location}/{repo}/{rest}"] = (
            f"projects/{project}/locations/{location}/repositories/{repo}/packages/{rest.split(':')[0]}"
            f"/versions/{digest}"
        )

    # --- HTTP ------------------------------------------------------------------------------------

    def handle(self, h: BaseHTTPRequestHandler, method: str) -> None:
        parts = urlsplit(h.path)
        path = parts.path
        body = h.rfile.read(int(h.headers.get("Content-Length") or 0))
        with self.lock:
            self.requests.append((method, path))
        try:
            code, payload = self.route(method, path, body)
        except Exception as e:  # a bug in the fake shows up as a 500 the test will see
            code, payload = 500, error_envelope(500, f"fake failed: {e!r}", "INTERNAL")
        data = json.dumps(payload).encode()
        h.send_response(code)
        h.send_header("Content-Type", "application/json")
        h.send_header("Content-Length", str(len(data)))
        h.end_headers()
        h.wfile.write(data)

    def route(self, method: str, path: str, body: bytes) -> tuple[int, dict[str, Any]]:
        if path.startswith(("/upload/storage/v1/b/", "/download/storage/v1/b/", "/storage/v1/b/")):
            if "storage" in self.deny:
                return 403, error_envelope(
                    403, "tester@example.com does not have storage.objects access to the Google Cloud Storage "
                    "object. Permission 'storage.objects.create' denied on resource (or it may not exist).",
                    "PERMISSION_DENIED")
            return 404, error_envelope(404, "not served by this fake", "NOT_FOUND")
        if m := _TAG.match(path):
            if "registry" in self.disabled:
                return 403, error_envelope(
                    403, "Artifact Registry API has not been used in project 123 before or it is disabled.",
                    "PERMISSION_DENIED", "SERVICE_DISABLED")
            if "registry" in self.deny:
                return 403, error_envelope(
                    403, "Permission 'artifactregistry.tags.get' denied on resource (or it may not exist).",
                    "PERMISSION_DENIED")
            key = f"{m['project']}/{m['location']}/{m['repo']}/{unquote(m['image'])}:{unquote(m['tag'])}"
            if key in self.tags:
                return 200, {"name": path.removeprefix("/v1/"), "version": self.tags[key]}
            return 404, error_envelope(404, f"Requested entity was not found: {key}", "NOT_FOUND")
        if method == "POST" and (m := _BUILDS.match(path)):
            if "cloudbuild" in self.disabled:
                return 403, error_envelope(
                    403, "Cloud Build API has not been used in project 123 before or it is disabled.",
                    "PERMISSION_DENIED", "SERVICE_DISABLED")
            if "cloudbuild" in self.deny:
                return 403, error_envelope(
                    403, "The caller does not have permission", "PERMISSION_DENIED")
            return self.create(m["project"], m["location"], json.loads(body))
        if method == "GET" and (m := _BUILD.match(path)):
            build = self.builds.get(m["id"])
            if build is None or (build.project, build.location) != (m["project"], m["location"]):
                return 404, error_envelope(404, f"build {m['id']} not found", "NOT_FOUND")
            if "cloudbuild" in self.deny:
                return 403, error_envelope(403, "The caller does not have permission", "PERMISSION_DENIED")
            with self.lock:
                self.advance(build)
                return 200, self.as_json(build)
        return 404, error_envelope(404, f"no such path {method} {path}", "NOT_FOUND")

    # --- Cloud Build --------------------------------------------------------------------------------

    def create(self, project: str, location: str, request: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        src = request.get("source", {}).get("storageSource", {})
        blob = self.storage.bucket(src["bucket"]).blob(src["object"], generation=int(src["generation"]))
        data = blob.download_as_bytes()  # what Cloud Build's FETCHSOURCE does
        with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as tar:
            names = sorted(m.name for m in tar.getmembers() if m.isfile())
        build = FakeBuild(
            id=str(uuid.uuid4()), project=project, location=location, request=request, outcome=self.outcome,
            logs_bucket=request.get("logsBucket") or f"gs://{self.logs_bucket}", source_files=names,
        )
        build.digest = "sha256:" + hashlib.sha256(data + build.image.encode()).hexdigest()
        build.steps = [{"id": s.get("id", ""), "name": s["name"], "status": "QUEUED"} for s in request["steps"]]
        self.builds[build.id] = build
        operation = {
            "name": f"projects/{project}/locations/{location}/operations/op-{build.id}",
            "metadata": {
                "@type": "type.googleapis.com/google.devtools.cloudbuild.v1.BuildOperationMetadata",
                "build": self.as_json(build),
            },
        }
        return 200, operation

    def write_log(self, build: FakeBuild, text: str) -> None:
        build.log += text
        bucket, _, folder = build.logs_bucket.removeprefix("gs://").partition("/")
        name = f"{folder + '/' if folder else ''}log-{build.id}.txt"
        self.storage.bucket(bucket).blob(name).upload_from_string(build.log.encode(), content_type="text/plain")

    def advance(self, build: FakeBuild) -> None:
        """Each poll after the first moves the build one stage on and appends that stage's log."""
        build.polls += 1
        stage = build.polls - 1  # the first poll still finds it QUEUED
        src = build.request["source"]["storageSource"]
        step0 = 'Step #0 - "build"'
        if stage == 1:
            build.status = "WORKING"
            build.steps[0].update(status="WORKING", timing={"startTime": "2025-05-28T22:00:05Z"})
            self.write_log(
                build,
                f'starting build "{build.id}"\n\nFETCHSOURCE\n'
                f"Fetching storage object: gs://{src['bucket']}/{src['object']}#{src['generation']}\n"
                f"Copying gs://{src['bucket']}/{src['object']}#{src['generation']}...\n"
                f"BUILD\nStarting {step0}\n{step0}: Sending build context to Docker daemon  {len(build.source_files)}"
                f" files\n{step0}: Step 1/14 : ARG BASE_IM",  # the write ends mid-line
            )
        elif stage == 2:
            base = build.request.get("substitutions", {}).get("_BASE_IMAGE")
            tail = f"AGE={base}\n{step0}: Step 2/14 : FROM ${{BASE_IMAGE}}\n"
            if build.outcome == "FAILURE":
                build.status = "FAILURE"
                build.steps[0].update(status="FAILURE", timing={"startTime": "2025-05-28T22:00:05Z",
                                                                 "endTime": "2025-05-28T22:00:47Z"})
                self.write_log(
                    build,
                    tail + f"{step0}: manifest for {base} not found: manifest unknown: manifest unknown\n"
                    f"Finished {step0}\nERROR\n"
                    'ERROR: build step 0 "gcr.io/cloud-builders/docker" failed: step exited with non-zero status: 1\n',
                )
                return
            build.steps[0].update(status="SUCCESS", timing={"startTime": "2025-05-28T22:00:05Z",
                                                             "endTime": "2025-05-28T22:41:05Z"})
            if len(build.steps) > 1:
                build.steps[1].update(status="WORKING", timing={"startTime": "2025-05-28T22:41:06Z"})
            self.write_log(
                build,
                tail + f"{step0}: Successfully tagged {build.image}\nFinished {step0}\n"
                f'Starting Step #1 - "push"\nStep #1 - "push": The push refers to repository [{build.image}]\n',
            )
        elif stage >= 3 and build.status == "WORKING":
            build.status = "SUCCESS"
            for step in build.steps[1:]:
                step.update(status="SUCCESS", timing={"startTime": "2025-05-28T22:41:06Z",
                                                      "endTime": "2025-05-28T22:43:10Z"})
            self.write_log(
                build,
                f'Step #1 - "push": {build.request["substitutions"]["_TRTLLM_VERSION"]}: digest: {build.digest} '
                'size: 9512\n'
                f'Finished Step #1 - "push"\nPUSH\nPushing {build.image}\nDONE',  # the real log ends without "\n"
            )
            self.add_tag(build.image, build.digest)

    def as_json(self, build: FakeBuild) -> dict[str, Any]:
        out: dict[str, Any] = {
            "id": build.id,
            "projectId": build.project,
            "status": STATUS[build.status],
            "steps": [
                {**{k: v for k, v in s.items() if k != "status"}, "status": STATUS[s["status"]]} for s in build.steps
            ],
            "logsBucket": build.logs_bucket,
            "logUrl": f"https://console.cloud.google.com/cloud-build/builds;region={build.location}/{build.id}",
            "images": [build.image] if build.request.get("images") else [],
            "createTime": "2025-05-28T22:00:00Z",
        }
        if build.status != "QUEUED":
            out["startTime"] = "2025-05-28T22:00:01Z"
        if build.status in ("SUCCESS", "FAILURE"):
            out["finishTime"] = "2025-05-28T22:43:11Z" if build.status == "SUCCESS" else "2025-05-28T22:00:48Z"
        if build.status == "SUCCESS":
            out["results"] = {
                "images": [{"name": build.image, "digest": build.digest,
                            "pushTiming": {"startTime": "2025-05-28T22:41:06Z", "endTime": "2025-05-28T22:43:10Z"}}],
                "buildStepImages": ["sha256:" + hashlib.sha256(s["name"].encode()).hexdigest() for s in build.steps],
            }
        if build.status == "FAILURE":
            out["statusDetail"] = 'Build step failure: build step 0 "gcr.io/cloud-builders/docker" failed'
            out["failureInfo"] = {"type": 3, "detail": 'Build step failure: build step 0 "gcr.io/cloud-builders/'
                                                       'docker" failed: step exited with non-zero status: 1'}
        return out
