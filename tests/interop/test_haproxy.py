"""The edge behind a real HAProxy (TCP mode, PROXY protocol v1 and v2), with slixmpp.

HAProxy connects to the edge from 127.0.0.2, so the edge's socket peer is never the
client: every SIC answer must carry the client's own socket address, which only the
PROXY header tells the edge. HAProxy's health checks (v2 LOCAL, v1 UNKNOWN) must keep
the backends UP without a warning in the edge's log.
"""

import asyncio
import csv
import io
import pathlib
import shutil
import socket
import subprocess
import tempfile
import time

import pytest

from conftest import USERS, Edge, free_port
from test_slixmpp import all_sic_forms, with_client

HOSTS = ["127.0.0.1", "::1"]
# The address HAProxy connects to the edge from.
BALANCER = "127.0.0.2"
CHECK_INTERVAL = 0.5


def haproxy_binary() -> str:
    path = shutil.which("haproxy") or "/usr/sbin/haproxy"
    if not pathlib.Path(path).exists():
        pytest.fail("haproxy is not installed: run `apt-get install haproxy` (Debian package)")
    return path


def bind_address(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


class HAProxy:
    """HAProxy in the foreground with a generated config: for each backend of the edge, a
    frontend listening on 127.0.0.1 and ::1."""

    # name: (edge PROXY listener kind, server options)
    BACKENDS = {
        "starttls_v2": ("starttls", "send-proxy-v2"),
        "starttls_v1": ("starttls", "send-proxy"),
        "direct_tls_v2": ("direct_tls", "send-proxy-v2"),
    }

    def __init__(self, workdir: pathlib.Path, edge: Edge):
        self.workdir = workdir
        self.socket = workdir / "haproxy.sock"
        self.log = workdir / "haproxy.log"
        self.ports = {name: {host: free_port(host) for host in HOSTS} for name in self.BACKENDS}
        self.edge = edge
        self.proc = None

    def config_text(self) -> str:
        sections = [
            "global\n"
            f"    stats socket {self.socket} mode 600 level user\n"
            "    maxconn 256\n",
            "defaults\n"
            "    mode tcp\n"
            "    timeout connect 5s\n"
            "    timeout client 60s\n"
            "    timeout server 60s\n",
        ]
        for name, (kind, send_proxy) in self.BACKENDS.items():
            binds = "".join(
                f"    bind {bind_address(host, port)}\n" for host, port in self.ports[name].items()
            )
            sections.append(f"frontend {name}\n{binds}    default_backend {name}\n")
            sections.append(
                f"backend {name}\n"
                f"    server edge 127.0.0.1:{self.edge.proxy[kind]} {send_proxy} "
                f"source {BALANCER} check check-send-proxy inter {int(CHECK_INTERVAL * 1000)}ms\n"
            )
        return "\n".join(sections)

    def start(self) -> None:
        config = self.workdir / "haproxy.cfg"
        config.write_text(self.config_text())
        with open(self.log, "wb") as log:
            self.proc = subprocess.Popen(
                [haproxy_binary(), "-db", "-f", config], cwd=self.workdir,
                stdout=log, stderr=subprocess.STDOUT,
            )
        # The stats socket answers once every frontend is bound.
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                pytest.fail(f"haproxy exited with {self.proc.returncode}:\n{self.log.read_text()}")
            try:
                self.command("show info")
                return
            except OSError:
                time.sleep(0.05)
        pytest.fail(f"haproxy did not start:\n{self.log.read_text()}")

    def command(self, line: str) -> str:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.settimeout(5)
            sock.connect(str(self.socket))
            sock.sendall(line.encode() + b"\n")
            chunks = []
            while chunk := sock.recv(65536):
                chunks.append(chunk)
        return b"".join(chunks).decode()

    def servers(self) -> dict[str, dict[str, str]]:
        """`show stat` rows of the backends' servers, by backend name."""
        text = self.command("show stat").lstrip("# ")
        return {
            row["pxname"]: row
            for row in csv.DictReader(io.StringIO(text))
            if row["svname"] == "edge"
        }

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


@pytest.fixture(scope="module")
def proxied():
    """An edge with PROXY listeners (PROXY debug lines logged) and HAProxy in front."""
    with tempfile.TemporaryDirectory(prefix="xmpp-edge-haproxy-") as tmp:
        workdir = pathlib.Path(tmp)
        edge = Edge(workdir, proxy=True, log_filter="info,edge::proxy_listener=debug")
        for user in USERS:
            edge.add_user(user)
        edge.start()
        haproxy = HAProxy(workdir, edge)
        try:
            haproxy.start()
            yield edge, haproxy
        finally:
            haproxy.stop()
            edge.stop()


def log_fields(line: str) -> dict[str, str]:
    """The `name=value` fields of an edge log line, and its message as `message`."""
    words = line.split()
    # Timestamp, level, target, then the message up to the first field.
    message = []
    fields = {}
    for word in words[3:]:
        name, eq, value = word.partition("=")
        if eq and name.isidentifier():
            fields[name] = value
        elif not fields:
            message.append(word)
    fields["message"] = " ".join(message)
    return fields


def socket_addr(host: str, port: int) -> str:
    """How the edge's log writes an address (Rust's SocketAddr)."""
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


async def sic_and_log(edge: Edge, client) -> None:
    await all_sic_forms(client)
    host, port = client.own_address()
    opened = [line for line in edge.log.read_text().splitlines() if "connection opened" in line]
    assert any(
        f"client={socket_addr(host, port)} " in line and f"balancer={BALANCER}:" in line
        for line in opened
    ), f"no 'connection opened' line names client {host}:{port} and the balancer:\n" + "\n".join(
        opened
    )


@pytest.mark.parametrize("host", HOSTS)
@pytest.mark.parametrize("backend", ["starttls_v2", "starttls_v1"])
def test_starttls_through_haproxy(proxied, backend, host):
    edge, haproxy = proxied
    asyncio.run(with_client(host, haproxy.ports[backend][host], False,
                            lambda client: sic_and_log(edge, client)))


@pytest.mark.parametrize("host", HOSTS)
def test_direct_tls_through_haproxy(proxied, host):
    edge, haproxy = proxied
    asyncio.run(with_client(host, haproxy.ports["direct_tls_v2"][host], True,
                            lambda client: sic_and_log(edge, client), user="bob"))


def test_health_checks_keep_backends_up_without_warnings(proxied):
    edge, haproxy = proxied
    log_start = len(edge.log.read_text().splitlines())
    # Enough time for several rounds of checks on every backend.
    time.sleep(CHECK_INTERVAL * 6)
    servers = haproxy.servers()
    assert set(servers) == set(HAProxy.BACKENDS), servers
    for name, server in servers.items():
        assert server["status"] == "UP", (name, server)
        assert server["check_status"] == "L4OK", (name, server)
        assert server["chkfail"] == "0", (name, server)

    lines = edge.log.read_text().splitlines()[log_start:]
    # A check's header names no client: v2 sends LOCAL, v1 the check's own addresses.
    checks = {
        fields["version"]
        for fields in map(log_fields, lines)
        if fields.get("message") == "PROXY header accepted"
        and fields["peer"].startswith(f"{BALANCER}:")
        and (fields["command"] == '"local"' or fields["client"] == fields["peer"])
    }
    assert checks == {'"v1"', '"v2"'}, "no health checks seen:\n" + "\n".join(lines)
    problems = [line for line in lines if " WARN " in line or " ERROR " in line]
    assert not problems, "\n".join(problems)
