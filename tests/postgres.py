"""A throwaway PostgreSQL cluster for end-to-end tests of the production tracking server: Debian's
`postgresql` binaries, a cluster initialised in a temporary directory, run by an unprivileged user
on a free loopback port, and stopped and removed afterwards."""

import glob
import os
import pwd
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from tests.helpers import free_port

# PostgreSQL refuses to run as root; Debian's package creates this user.
UNPRIVILEGED = "postgres"
SUPERUSER = "charlm"


def bindir() -> Path:
    """The directory of `initdb` and `pg_ctl`: Debian keeps them off PATH, under its versioned tree."""
    found = shutil.which("initdb") or max(glob.glob("/usr/lib/postgresql/*/bin/initdb"), default=None)
    assert found, "PostgreSQL's initdb was not found: install Debian's postgresql (.ci/run does)"
    return Path(found).resolve().parent


@contextmanager
def postgres_cluster(*databases: str) -> Iterator[str]:
    """Run a cluster holding `databases`, reachable without a password from this machine only;
    yields its SQLAlchemy address, `postgresql+psycopg2://charlm@127.0.0.1:<port>`, to which a
    database name is added. (SQLAlchemy 2.1 reads a bare `postgresql://` as psycopg 3.)"""
    bin_, port = bindir(), free_port()
    # Not pytest's tmp_path: its parents are private to root, and the server must reach its files.
    root = Path(tempfile.mkdtemp(prefix="charlm-pg-"))
    as_user: list[str] = []
    if os.geteuid() == 0:
        owner = pwd.getpwnam(UNPRIVILEGED)
        os.chown(root, owner.pw_uid, owner.pw_gid)
        as_user = ["runuser", "-u", UNPRIVILEGED, "--"]

    def pg(*cmd: str) -> None:
        done = subprocess.run([*as_user, *cmd], capture_output=True, text=True)
        assert done.returncode == 0, f"{cmd[0]} exited {done.returncode}: {done.stderr}"

    data, address = root / "data", f"postgresql+psycopg2://{SUPERUSER}@127.0.0.1:{port}"
    try:
        pg(str(bin_ / "initdb"), "-D", str(data), "-U", SUPERUSER, "--auth=trust", "-E", "UTF8", "--no-sync")
        options = f"-p {port} -k {root} -c listen_addresses=127.0.0.1 -c fsync=off"
        pg(str(bin_ / "pg_ctl"), "-D", str(data), "-l", str(root / "log"), "-o", options, "-w", "start")
        try:
            for name in databases:
                pg(str(bin_ / "createdb"), "-h", "127.0.0.1", "-p", str(port), "-U", SUPERUSER, name)
            yield address
        finally:
            pg(str(bin_ / "pg_ctl"), "-D", str(data), "-m", "fast", "-w", "stop")
    finally:
        shutil.rmtree(root, ignore_errors=True)
