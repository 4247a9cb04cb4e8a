"""Where results go: a GCS bucket or a mounted folder, written "create only".

The recipe left raw stdout whose file names collided between runs. Here every object is created only
if it does not exist yet (GCS ``if_generation_match=0``; ``open(path, "x")`` on a mounted path such as
the Cloud Storage FUSE mount ``/gcs``): a re-run can never overwrite a result. ``create`` says
whether it wrote, so the launcher can tell "already there" (a restart) from "written now".

``google.cloud.storage`` is imported only for a ``gs://`` destination; it honours
``STORAGE_EMULATOR_HOST``, which the tests point at a local fake-gcs-server.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from errors import StoreError


class ResultStore(Protocol):
    def exists(self, key: str) -> bool: ...

    def read(self, key: str) -> bytes | None: ...

    def create(self, key: str, data: bytes, content_type: str = "application/octet-stream") -> bool:
        """Write ``key`` if it is absent: ``True`` if written now, ``False`` if it already existed."""
        ...

    def url(self, key: str) -> str: ...


@dataclass
class LocalStore:
    """A folder (a local disk or a FUSE-mounted bucket); objects are files under ``root``."""

    root: Path

    def _path(self, key: str) -> Path:
        parts = [p for p in key.split("/") if p]
        if not parts or any(p in (".", "..") for p in parts):
            raise StoreError(f"invalid object name {key!r}")
        return self.root.joinpath(*parts)

    def exists(self, key: str) -> bool:
        return self._path(key).is_file()

    def read(self, key: str) -> bytes | None:
        try:
            return self._path(key).read_bytes()
        except FileNotFoundError:
            return None

    def create(self, key: str, data: bytes, content_type: str = "application/octet-stream") -> bool:
        path = self._path(key)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            with open(path, "xb") as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
        except FileExistsError:
            return False
        except OSError as e:
            raise StoreError(f"cannot write {path}: {e}") from e
        return True

    def url(self, key: str) -> str:
        return str(self._path(key))


@dataclass
class GCSStore:
    """Objects in ``bucket`` under ``prefix``, through google-cloud-storage."""

    bucket_name: str
    prefix: str = ""
    client: Any = None
    _bucket: Any = field(default=None, repr=False)

    def _blob(self, key: str) -> Any:
        if self._bucket is None:
            if self.client is None:
                try:
                    from google.cloud import storage
                except ImportError as e:
                    raise StoreError(
                        "results go to gs:// but google-cloud-storage is not installed in this image: "
                        "pip install google-cloud-storage, or mount the bucket and give a path"
                    ) from e
                self.client = storage.Client()
            self._bucket = self.client.bucket(self.bucket_name)
        name = f"{self.prefix}/{key}" if self.prefix else key
        return self._bucket.blob(name)

    def exists(self, key: str) -> bool:
        try:
            return bool(self._blob(key).exists())
        except StoreError:
            raise
        except Exception as e:
            raise StoreError(f"cannot check {self.url(key)}: {e}") from e

    def read(self, key: str) -> bytes | None:
        from google.api_core.exceptions import NotFound

        try:
            return self._blob(key).download_as_bytes()
        except NotFound:
            return None
        except Exception as e:
            raise StoreError(f"cannot read {self.url(key)}: {e}") from e

    def create(self, key: str, data: bytes, content_type: str = "application/octet-stream") -> bool:
        from google.api_core.exceptions import PreconditionFailed

        try:
            self._blob(key).upload_from_string(data, content_type=content_type, if_generation_match=0)
        except PreconditionFailed:
            return False
        except StoreError:
            raise
        except Exception as e:
            raise StoreError(f"cannot write {self.url(key)}: {e}") from e
        return True

    def url(self, key: str) -> str:
        name = f"{self.prefix}/{key}" if self.prefix else key
        return f"gs://{self.bucket_name}/{name}"


def open_store(results: str, client: Any = None) -> ResultStore:
    """``gs://BUCKET/PREFIX`` -> ``GCSStore``; an absolute path -> ``LocalStore``."""
    if results.startswith("gs://"):
        bucket, _, prefix = results[5:].partition("/")
        return GCSStore(bucket, prefix.strip("/"), client=client)
    return LocalStore(Path(results))
