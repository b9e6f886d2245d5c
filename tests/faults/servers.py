"""Private Redis and PostgreSQL servers for the fault tests: started on a spare loopback port, in a directory of
their own, to kill and restart at will (the shared services on :6379 and :5432 are never touched)."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path

import sqlalchemy as sa

from tests.conftest import service_missing, wait_until


def spare_port() -> int:
    """A TCP port free on 127.0.0.1 right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _port_open(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.2)
        return sock.connect_ex(("127.0.0.1", port)) == 0


# ---- Redis ---------------------------------------------------------------------------------------------------

class RedisServer:
    """A ``redis-server`` of our own on a spare port, without persistence: a restart loses every message."""

    def __init__(self, directory: Path, password: str | None = None) -> None:
        self.password = password
        self.binary = shutil.which("redis-server")
        if self.binary is None:
            service_missing("redis-server", FileNotFoundError("redis-server not on PATH"))
        self.directory = directory
        self.port = spare_port()
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        auth = f":{self.password}@" if self.password else ""
        return f"redis://{auth}127.0.0.1:{self.port}/0"

    def start(self) -> None:
        log = (self.directory / "redis.log").open("ab")
        self.process = subprocess.Popen(
            [str(self.binary), "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
             "--dir", str(self.directory), "--protected-mode", "yes",
             *(["--requirepass", self.password] if self.password else [])],
            stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        wait_until(lambda: _port_open(self.port), timeout_s=15, interval_s=0.05, what="redis-server listening")

    def kill(self) -> None:
        """SIGKILL, as a crash would: everything in memory is gone."""
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=15)
        self.process = None

    def restart(self, down_s: float = 1.0) -> None:
        self.kill()
        time.sleep(down_s)
        self.start()


# ---- PostgreSQL ----------------------------------------------------------------------------------------------

def _pg_bin() -> Path | None:
    found = shutil.which("pg_ctl")
    if found:
        return Path(found).parent
    candidates = sorted(Path("/usr/lib/postgresql").glob("*/bin/pg_ctl"), reverse=True)
    return candidates[0].parent if candidates else None


def _as_owner(cmd: list[str]) -> list[str]:
    """PostgreSQL refuses to run as root: run its tools as the ``postgres`` user then."""
    if os.geteuid() == 0:
        return ["runuser", "-u", "postgres", "--", *cmd]
    return cmd


def _chown_to_postgres(path: Path) -> None:
    if os.geteuid() == 0:
        shutil.chown(path, "postgres")


class PostgresCluster:
    """A PostgreSQL cluster of our own (initdb, pg_ctl) on a spare port, to stop and start at will."""

    def __init__(self, template: Path, directory: Path) -> None:
        self.bin = _pg_bin()
        assert self.bin is not None
        self.directory = directory
        self.data = directory / "data"
        shutil.copytree(template, self.data, symlinks=True)
        for path in [directory, *self.data.rglob("*"), self.data]:
            _chown_to_postgres(path)
        self.port = spare_port()
        self.log = directory / "postgres.log"

    def admin_url(self, database: str = "postgres") -> str:
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/{database}"

    def _pg_ctl(self, *args: str, timeout_s: float = 60) -> None:
        cmd = _as_owner([str(self.bin / "pg_ctl"), "-D", str(self.data), *args])
        subprocess.run(cmd, check=True, timeout=timeout_s, capture_output=True)

    def start(self) -> None:
        options = (f"-p {self.port} -c listen_addresses=127.0.0.1 -k {self.directory} -c fsync=off "
                   "-c synchronous_commit=off -c full_page_writes=off -c max_connections=60")
        self._pg_ctl("-l", str(self.log), "-o", options, "-w", "-t", "60", "start")

    def stop(self, mode: str = "fast") -> None:
        """``fast``: every session is ended at once (clients see their connections die)."""
        try:
            self._pg_ctl("-m", mode, "-w", "-t", "60", "stop")
        except subprocess.CalledProcessError as exc:
            if self.running():
                raise AssertionError(f"pg_ctl stop failed: {exc.stdout!r} {exc.stderr!r}") from exc
        assert not self.running(), "PostgreSQL still accepts connections after pg_ctl stop"

    def running(self) -> bool:
        return _port_open(self.port)

    def create_database(self, name: str = "aidetect") -> str:
        from db.migrate import upgrade
        from db.session import make_engine

        admin = sa.create_engine(self.admin_url(), isolation_level="AUTOCOMMIT")
        with admin.connect() as conn:
            conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
        admin.dispose()
        url = self.admin_url(name)
        engine = make_engine(url)
        upgrade(engine)
        engine.dispose()
        return url


def postgres_dir(prefix: str) -> Path:
    """A directory the cluster's owner can reach (pytest's own temporary directories are private to us)."""
    path = Path(tempfile.mkdtemp(prefix=prefix))
    _chown_to_postgres(path)
    return path


def initdb_template() -> Path:
    """A fresh initdb'd data directory (trust, user ``postgres``) for clusters to copy; remove its parent after use.

    Missing server binaries, or an initdb that fails, skip locally and fail in CI.
    """
    binaries = _pg_bin()
    if binaries is None:
        service_missing("PostgreSQL server binaries", FileNotFoundError("pg_ctl/initdb not found"))
    root = postgres_dir("aidetect-pgtemplate-")
    data = root / "data"
    cmd = _as_owner([str(binaries / "initdb"), "-D", str(data), "-A", "trust", "-U", "postgres", "-E", "UTF8",
                     "--no-sync", "--no-instructions"])
    try:
        subprocess.run(cmd, check=True, timeout=120, capture_output=True)
    except (subprocess.CalledProcessError, FileNotFoundError) as exc:
        shutil.rmtree(root, ignore_errors=True)
        service_missing("initdb", exc)
    return data
