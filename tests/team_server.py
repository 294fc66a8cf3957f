"""The production tracking server as a team runs it, for end-to-end tests: `make server` on a
throwaway PostgreSQL cluster (runs and registry in one database, users in another), artifacts
served by the server, MLflow's basic-auth app in front, and the users docs/team.md creates."""

import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlencode

import pytest

from tests.helpers import http_json, tracking_env_kept, tracking_server
from tests.postgres import postgres_cluster

AUTH_INI = """\
[mlflow]
default_permission = NO_PERMISSIONS
database_uri = {database}
admin_username = admin
admin_password = {password}
auth_cache_ttl_seconds = 60
"""


@dataclass(frozen=True)
class User:
    name: str
    password: str

    @classmethod
    def new(cls, name: str) -> "User":
        return cls(name, secrets.token_urlsafe(12))

    @property
    def env(self) -> dict[str, str]:
        """The environment that gives MLflow's clients, and so every stage, these credentials."""
        return {"MLFLOW_TRACKING_USERNAME": self.name, "MLFLOW_TRACKING_PASSWORD": self.password}

    @property
    def auth(self) -> tuple[str, str]:
        return self.name, self.password


ADMIN, WRITER, READER = User.new("admin"), User.new("writer"), User.new("reader")
SECOND_WRITER = User.new("writer2")


@dataclass(frozen=True)
class TeamServer:
    address: str
    root: Path  # `make server`'s SERVER_DIR: the artifact store is under it

    def api(self, endpoint: str, payload: dict | None = None, user: User | None = None, **query: str) -> dict:
        """Call a REST endpoint as `user` and return the body of its 200 answer."""
        url = f"{self.address}/api/2.0/mlflow/{endpoint}" + (f"?{urlencode(query)}" if query else "")
        status, body = http_json(url, payload, auth=user.auth if user else None)
        assert status == 200, (endpoint, status, body)
        return body


@contextmanager
def acting_as(user: User) -> Iterator[None]:
    """In this process, MLflow's clients send `user`'s credentials (and the tracking URI set
    meanwhile is forgotten after)."""
    with tracking_env_kept(), pytest.MonkeyPatch.context() as patch:
        for key, value in user.env.items():
            patch.setenv(key, value)
        yield


@contextmanager
def serve_team(root: Path) -> Iterator[TeamServer]:
    """Run the server with its files under `root`; the admin has created WRITER, READER and
    SECOND_WRITER, who have no permission on anything yet."""
    import mlflow.server

    with postgres_cluster("mlflow", "mlflow_auth") as postgres:
        auth_ini = root / "basic_auth.ini"
        auth_ini.write_text(AUTH_INI.format(database=f"{postgres}/mlflow_auth", password=ADMIN.password))
        env = {
            "MLFLOW_AUTH_CONFIG_PATH": str(auth_ini),
            "MLFLOW_FLASK_SERVER_SECRET_KEY": secrets.token_hex(16),
        }
        settings = [f"SERVER_BACKEND={postgres}/mlflow", "SERVER_OPTS=--app-name basic-auth"]
        with tracking_server(root / "server", *settings, env=env) as address:
            with acting_as(ADMIN):
                users = mlflow.server.get_app_client("basic-auth", tracking_uri=address)
                for user in (WRITER, READER, SECOND_WRITER):
                    users.create_user(user.name, user.password)
            yield TeamServer(address, root / "server")
