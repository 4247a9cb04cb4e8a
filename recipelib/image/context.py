"""The Docker build context: ``launcher/`` packed as a reproducible tar.gz, minus what the ignore file names.

Cloud Build builds from a tarball in Cloud Storage, the way ``gcloud builds submit`` uploads one. We pack
it ourselves so that no gcloud is needed, and deterministically (sorted names, fixed times, owners and
modes, gzip without a timestamp): the same files always give the same bytes and the same sha256, so a
digest says exactly what was built.

The ignore file is ``.gcloudignore`` in the context folder, in gitignore syntax, so that a person who
runs ``gcloud builds submit`` by hand gets the same context. Supported: ``#`` comments, ``!`` to
re-include, a trailing ``/`` for folders only, a leading ``/`` (or any inner ``/``) to anchor at the
context root, ``*``, ``?``, ``[...]`` and ``**``. As in git, a file inside an ignored folder cannot be
re-included.

Example::

    ctx = pack_context(Path("launcher"))
    ctx.files        # ('Dockerfile', 'bench.py', ..., 'requirements.txt')
    ctx.sha256       # same files, same digest
"""

from __future__ import annotations

import fnmatch
import gzip
import hashlib
import io
import os
import re
import shlex
import stat
import tarfile
from dataclasses import dataclass
from pathlib import Path

from recipelib.errors import ConfigError

IGNORE_FILE = ".gcloudignore"
MAX_CONTEXT_BYTES = 64 * 1024 * 1024
"""A build context larger than this is refused: it means a checkpoint or a cache slipped into the folder."""


@dataclass(frozen=True)
class IgnoreRule:
    pattern: str
    regex: re.Pattern[str]
    negate: bool
    dir_only: bool


def _translate(glob: str) -> str:
    """A gitignore glob (no leading/trailing slash) as a regex over '/'-separated relative paths."""
    out: list[str] = []
    i = 0
    while i < len(glob):
        if glob.startswith("**/", i):
            out.append("(?:.*/)?")
            i += 3
        elif glob.startswith("/**", i) and i + 3 == len(glob):
            out.append("/.*")
            i += 3
        elif glob.startswith("**", i):
            out.append(".*")
            i += 2
        elif glob[i] == "*":
            out.append("[^/]*")
            i += 1
        elif glob[i] == "?":
            out.append("[^/]")
            i += 1
        elif glob[i] == "[":
            end = glob.find("]", i + 1)
            if end == -1:
                out.append(re.escape("["))
                i += 1
            else:
                body = glob[i + 1 : end]
                if body.startswith("!"):
                    body = "^" + body[1:]
                out.append(f"[{body}]")
                i = end + 1
        elif glob[i] == "\\" and i + 1 < len(glob):
            out.append(re.escape(glob[i + 1]))
            i += 2
        else:
            out.append(re.escape(glob[i]))
            i += 1
    return "".join(out)


def parse_ignore(text: str, source: str = IGNORE_FILE) -> list[IgnoreRule]:
    """Rules in file order; the last rule that matches a path decides."""
    rules: list[IgnoreRule] = []
    for lineno, raw in enumerate(text.splitlines(), 1):
        line = raw.rstrip()
        if line.startswith("#!include"):
            raise ConfigError(f"{source}:{lineno}", "'#!include' directives are not supported; list the patterns here")
        if not line or line.startswith("#"):
            continue
        negate = line.startswith("!")
        if negate:
            line = line[1:]
        if line.startswith("\\"):
            line = line[1:]
        dir_only = line.endswith("/")
        line = line.rstrip("/")
        anchored = "/" in line
        body = line.lstrip("/")
        if not body:
            raise ConfigError(f"{source}:{lineno}", f"pattern {raw!r} matches nothing")
        regex = _translate(body)
        regex = f"^{regex}$" if anchored else f"^(?:.*/)?{regex}$"
        rules.append(IgnoreRule(raw, re.compile(regex), negate, dir_only))
    return rules


def is_ignored(rules: list[IgnoreRule], relpath: str, is_dir: bool) -> bool:
    ignored = False
    for rule in rules:
        if rule.dir_only and not is_dir:
            continue
        if rule.regex.match(relpath):
            ignored = not rule.negate
    return ignored


def context_files(context_dir: Path, ignore_file: str = IGNORE_FILE) -> list[str]:
    """The relative paths (``/``-separated, sorted) of the regular files that go into the context."""
    if not context_dir.is_dir():
        raise ConfigError("context_dir", f"{context_dir} is not a folder")
    ignore_path = context_dir / ignore_file
    rules = parse_ignore(ignore_path.read_text(), ignore_file) if ignore_path.is_file() else []
    found: list[str] = []
    for root, dirs, files in os.walk(context_dir):
        rel_root = Path(root).relative_to(context_dir).as_posix()
        prefix = "" if rel_root == "." else rel_root + "/"
        kept_dirs = []
        for d in sorted(dirs):
            rel = prefix + d
            if (Path(root) / d).is_symlink():
                if not is_ignored(rules, rel, True):
                    raise ConfigError("context_dir", f"{rel} is a symbolic link; copy the files or ignore it in "
                                                     f"{ignore_file}")
                continue
            if not is_ignored(rules, rel, True):
                kept_dirs.append(d)
        dirs[:] = kept_dirs
        for f in files:
            rel = prefix + f
            if is_ignored(rules, rel, False):
                continue
            mode = os.lstat(Path(root) / f).st_mode
            if not stat.S_ISREG(mode):
                raise ConfigError("context_dir", f"{rel} is not a regular file (a link or a device); copy the file "
                                                 f"or ignore it in {ignore_file}")
            found.append(rel)
    return sorted(found)


@dataclass(frozen=True)
class BuildContext:
    """A packed context: the tar.gz bytes, what is in them, and their digest."""

    data: bytes
    files: tuple[str, ...]
    sha256: str

    @property
    def size(self) -> int:
        return len(self.data)


def pack_context(
    context_dir: Path, *, ignore_file: str = IGNORE_FILE, max_bytes: int = MAX_CONTEXT_BYTES
) -> BuildContext:
    """Tar and gzip ``context_dir`` reproducibly: same files in, same bytes out."""
    files = context_files(context_dir, ignore_file)
    if not files:
        raise ConfigError("context_dir", f"{context_dir} holds no files to build from (all ignored?)")
    total = sum((context_dir / f).stat().st_size for f in files)
    if total > max_bytes:
        biggest = max(files, key=lambda f: (context_dir / f).stat().st_size)
        raise ConfigError(
            "context_dir",
            f"{context_dir} holds {total / 2**20:.1f} MiB (largest: {biggest}); the limit is "
            f"{max_bytes / 2**20:.0f} MiB. Add large files to {ignore_file}",
        )
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as tar:
        dirs = sorted({"/".join(f.split("/")[:i]) for f in files for i in range(1, f.count("/") + 1)})
        for d in dirs:
            info = tarfile.TarInfo(d)
            info.type = tarfile.DIRTYPE
            info.mode = 0o755
            tar.addfile(_normalised(info))
        for f in files:
            path = context_dir / f
            info = tarfile.TarInfo(f)
            info.size = path.stat().st_size
            info.mode = 0o755 if path.stat().st_mode & stat.S_IXUSR else 0o644
            with path.open("rb") as fh:
                tar.addfile(_normalised(info), fh)
    packed = io.BytesIO()
    with gzip.GzipFile(fileobj=packed, mode="wb", mtime=0, filename="") as gz:
        gz.write(raw.getvalue())
    data = packed.getvalue()
    return BuildContext(data, tuple(files), hashlib.sha256(data).hexdigest())


def _normalised(info: tarfile.TarInfo) -> tarfile.TarInfo:
    info.mtime = 0
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    return info


def dockerfile_sources(dockerfile: str) -> list[tuple[int, str]]:
    """``(line, source)`` for each local source of a ``COPY``/``ADD`` (not ``--from=`` stages, not URLs).

    Continuation lines are joined first. Used to check, before a two-hour build, that every file the
    Dockerfile copies is in the context.
    """
    sources: list[tuple[int, str]] = []
    logical: list[tuple[int, str]] = []
    buf, start = "", 0
    for n, line in enumerate(dockerfile.splitlines(), 1):
        stripped = line.strip()
        if not buf and (not stripped or stripped.startswith("#")):
            continue
        if not buf:
            start = n
        if stripped.endswith("\\"):
            buf += stripped[:-1] + " "
            continue
        logical.append((start, buf + stripped))
        buf = ""
    for n, line in logical:
        parts = line.split(None, 1)
        if len(parts) < 2 or parts[0].upper() not in ("COPY", "ADD"):
            continue
        rest = parts[1].strip()
        if rest.startswith("["):
            import json

            try:
                args = [str(a) for a in json.loads(rest)]
            except ValueError:
                continue
        else:
            try:
                args = shlex.split(rest)
            except ValueError:
                continue
        flags = [a for a in args if a.startswith("--")]
        if any(f.startswith("--from") for f in flags):
            continue
        paths = [a for a in args if not a.startswith("--")]
        for src in paths[:-1]:
            if "://" not in src and "$" not in src:
                sources.append((n, src))
    return sources


def missing_sources(dockerfile: str, files: tuple[str, ...] | list[str]) -> list[tuple[int, str]]:
    """Dockerfile sources that match no file of the context (a file, a glob, or a folder prefix)."""
    missing = []
    for n, src in dockerfile_sources(dockerfile):
        pattern = src.removeprefix("./").rstrip("/")
        if pattern in ("", "."):
            continue
        if not any(fnmatch.fnmatchcase(f, pattern) or f.startswith(pattern + "/") for f in files):
            missing.append((n, src))
    return missing
