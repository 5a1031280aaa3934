"""Fixtures that run the real `xmpp-edge` binary on loopback for third-party clients.

Each test module gets its own edge process with a temporary config, users file and
free ports, so tests never depend on a server someone left running.
"""

import os
import pathlib
import socket
import subprocess
import tempfile
import time

import pytest

REPO = pathlib.Path(__file__).resolve().parents[2]
DOMAIN = "localhost"
PASSWORD = "interop-secret"
USERS = ("alice", "bob")


def edge_binary() -> pathlib.Path:
    """The binary under test: built by scripts/test-all, or named by XMPP_EDGE_BIN."""
    path = pathlib.Path(os.environ.get("XMPP_EDGE_BIN", REPO / "target/debug/xmpp-edge"))
    if not path.exists():
        pytest.fail(f"{path} is missing: run `cargo build --bin xmpp-edge` first")
    return path


def free_port(host: str) -> int:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


def wait_listening(host: str, port: int, proc: subprocess.Popen, log: pathlib.Path) -> None:
    deadline = time.monotonic() + 20
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"xmpp-edge exited with {proc.returncode}:\n{log.read_text()}")
        with socket.socket(family, socket.SOCK_STREAM) as sock:
            if sock.connect_ex((host, port)) == 0:
                return
        time.sleep(0.05)
    pytest.fail(f"xmpp-edge did not listen on {host}:{port}:\n{log.read_text()}")


class Edge:
    """A running edge: its listener ports per address family and its log.

    With `proxy`, it also has one listener of each kind on 127.0.0.1 that requires a
    PROXY protocol header, for a load balancer on loopback (trusted by default).
    """

    def __init__(self, workdir: pathlib.Path, proxy: bool = False, log_filter: str = "info"):
        self.workdir = workdir
        self.users_file = workdir / "users.toml"
        self.log = workdir / "edge.log"
        self.log_filter = log_filter
        self.starttls = {"127.0.0.1": free_port("127.0.0.1"), "::1": free_port("::1")}
        self.direct_tls = {"127.0.0.1": free_port("127.0.0.1"), "::1": free_port("::1")}
        self.proxy = (
            {kind: free_port("127.0.0.1") for kind in ("starttls", "direct_tls")} if proxy else {}
        )
        self.proc = None

    def config_text(self) -> str:
        listeners = []
        for kind, ports in (("starttls", self.starttls), ("direct_tls", self.direct_tls)):
            for host, port in ports.items():
                addr = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
                listeners.append(f'[[listeners]]\nkind = "{kind}"\naddress = "{addr}"\n')
        for kind, port in self.proxy.items():
            listeners.append(
                f'[[listeners]]\nkind = "{kind}"\naddress = "127.0.0.1:{port}"\n'
                'proxy_protocol = "required"\n'
            )
        return (
            f'domains = ["{DOMAIN}"]\n'
            f'users_file = "{self.users_file}"\n\n'
            '[shutdown]\ngrace_period = "1s"\nforce_after = "1s"\n\n'
            # Any free port: the default 9145 may be taken by another edge.
            '[admin]\naddress = "127.0.0.1:0"\n\n' + "\n".join(listeners)
        )

    def add_user(self, local: str) -> None:
        subprocess.run(
            [edge_binary(), "user", "add", f"{local}@{DOMAIN}", "--password-stdin",
             "--users", self.users_file],
            input=PASSWORD.encode(), check=True, capture_output=True,
        )

    def start(self) -> None:
        config = self.workdir / "edge.toml"
        config.write_text(self.config_text())
        env = dict(os.environ, RUST_LOG=os.environ.get("RUST_LOG", self.log_filter))
        with open(self.log, "wb") as log:
            self.proc = subprocess.Popen(
                [edge_binary(), "--config", config], cwd=self.workdir,
                stdout=log, stderr=subprocess.STDOUT, env=env,
            )
        for ports in (self.starttls, self.direct_tls):
            for host, port in ports.items():
                wait_listening(host, port, self.proc, self.log)
        for port in self.proxy.values():
            wait_listening("127.0.0.1", port, self.proc, self.log)

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                pytest.fail(f"xmpp-edge ignored SIGTERM:\n{self.log.read_text()}")


@pytest.fixture(scope="module")
def edge():
    with tempfile.TemporaryDirectory(prefix="xmpp-edge-interop-") as tmp:
        server = Edge(pathlib.Path(tmp))
        for user in USERS:
            server.add_user(user)
        server.start()
        try:
            yield server
        finally:
            server.stop()
