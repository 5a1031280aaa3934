"""loadgen against ejabberd from Debian: a server no one here wrote.

The test runs its own ejabberd node on loopback (its own config, certificate, Mnesia
spool and logs in a temporary directory), registers accounts with `ejabberdctl
register`, and drives short loadgen runs over STARTTLS with SCRAM-SHA-1 and SCRAM-SHA-256
(each on a virtual host whose stored SCRAM hash matches), then through a listener with
ejabberd's own PROXY protocol parser. Every SIC answer (mod_sic) must carry the client's
address: the socket's, or the synthetic one in loadgen's PROXY header.

The node uses a fixed Erlang distribution port (ERL_DIST_PORT), so no epmd is started,
and a cookie of its own, so nothing outside the temporary directory is touched. As root,
ejabberdctl runs ejabberd as the `ejabberd` user, as the Debian package intends.
"""

import json
import os
import pathlib
import pwd
import secrets
import shutil
import signal
import subprocess
import tempfile
import time

import pytest

from conftest import REPO, free_port

EJABBERDCTL = "/usr/sbin/ejabberdctl"
PASSWORD = "interop-secret"
ACCOUNTS = 2
# localhost keeps ejabberd's default SCRAM-SHA-1 credentials; this host stores SHA-256.
SHA256_HOST = "sha256.localhost"
# sic0-ip (the oldest form) is not implemented by mod_sic; sic:0 and sic:1 <address> are.
MIX = "sic0-address=1,sic1-address=1,disco-info=1,ping=1"


def loadgen_binary() -> pathlib.Path:
    """Built by scripts/test-all (`cargo build --workspace --bins`), or LOADGEN_BIN."""
    path = pathlib.Path(os.environ.get("LOADGEN_BIN", REPO / "target/debug/loadgen"))
    if not path.exists():
        pytest.fail(f"{path} is missing: run `cargo build -p loadgen` first")
    return path


def require_tools() -> None:
    if not pathlib.Path(EJABBERDCTL).exists():
        pytest.fail("ejabberd is not installed: run `apt-get install ejabberd` (Debian package)")
    if shutil.which("openssl") is None:
        pytest.fail("openssl is not installed: run `apt-get install openssl` (Debian package)")


def descendants(pid: int) -> list[int]:
    """Processes below `pid`, from /proc (su starts ejabberd in a session of its own, so
    a process group cannot reach it)."""
    children: dict[int, list[int]] = {}
    for entry in pathlib.Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            # The command name is in parentheses and may hold spaces: split after it.
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        children.setdefault(int(fields[1]), []).append(int(entry.name))
    found, todo = [], [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


class Ejabberd:
    """One ejabberd node in the foreground, controlled with ejabberdctl."""

    def __init__(self, workdir: pathlib.Path):
        self.workdir = workdir
        self.c2s = free_port("127.0.0.1")
        self.c2s_proxy = free_port("127.0.0.1")
        # Without TLS, for loadgen's --tls none (and its plaintext login cost).
        self.c2s_plain = free_port("127.0.0.1")
        self.dist = free_port("127.0.0.1")
        self.log = workdir / "logs" / "ejabberd.log"
        self.proc = None

    def ctl_args(self) -> list[str]:
        w = self.workdir
        return [
            EJABBERDCTL, "--config-dir", str(w), "--config", str(w / "ejabberd.yml"),
            "--ctl-config", str(w / "ejabberdctl.cfg"), "--logs", str(w / "logs"),
            "--spool", str(w / "spool"),
        ]

    def ctl(self, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        result = subprocess.run(
            self.ctl_args() + list(args), capture_output=True, text=True, timeout=30
        )
        if check and result.returncode != 0:
            pytest.fail(
                f"ejabberdctl {' '.join(args)} failed ({result.returncode}):\n"
                f"{result.stdout}{result.stderr}\n{self.logs()}"
            )
        return result

    def logs(self) -> str:
        texts = []
        for name in ("foreground.log", "logs/ejabberd.log", "logs/error.log"):
            path = self.workdir / name
            if path.exists():
                texts.append(f"--- {name}\n{path.read_text(errors='replace')[-4000:]}")
        return "\n".join(texts)

    def write_files(self) -> None:
        w = self.workdir
        (w / "spool").mkdir()
        (w / "logs").mkdir()
        subprocess.run(
            ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
             "ec_paramgen_curve:prime256v1", "-nodes", "-days", "2", "-subj", "/CN=localhost",
             "-addext", f"subjectAltName=DNS:localhost,DNS:{SHA256_HOST}",
             "-keyout", w / "key.pem", "-out", w / "cert.pem"],
            check=True, capture_output=True, timeout=30,
        )
        (w / "server.pem").write_text((w / "cert.pem").read_text() + (w / "key.pem").read_text())
        listener = (
            "  -\n"
            "    port: {port}\n"
            '    ip: "127.0.0.1"\n'
            "    module: ejabberd_c2s\n"
            "    starttls_required: true\n"
        )
        (w / "ejabberd.yml").write_text(
            "loglevel: warning\n"
            f"hosts:\n  - localhost\n  - {SHA256_HOST}\n"
            f'certfiles:\n  - "{w / "server.pem"}"\n'
            "auth_method: internal\n"
            "auth_password_format: scram\n"
            f"host_config:\n  {SHA256_HOST}:\n    auth_scram_hash: sha256\n"
            "listen:\n"
            + listener.format(port=self.c2s)
            + listener.format(port=self.c2s_proxy)
            + "    use_proxy_protocol: true\n"
            + listener.format(port=self.c2s_plain).replace(
                "starttls_required: true", "starttls: false"
            )
            + "modules:\n  mod_disco: {}\n  mod_ping: {}\n  mod_sic: {}\n"
        )
        # Sourced by ejabberdctl: a node name of its own, the distribution on a fixed
        # port instead of epmd, and a cookie instead of ~/.erlang.cookie.
        (w / "ejabberdctl.cfg").write_text(
            f"ERLANG_NODE=loadgen-test-{os.getpid()}@localhost\n"
            f"ERL_DIST_PORT={self.dist}\n"
            f'ERL_OPTIONS="-setcookie {secrets.token_hex(16)}"\n'
        )
        shutil.copy("/etc/ejabberd/inetrc", w / "inetrc")
        (w / "password").write_text(PASSWORD + "\n")
        if os.geteuid() == 0:
            # ejabberdctl switches to the ejabberd user, who must own the node's files.
            user = pwd.getpwnam("ejabberd")
            for path in [w, *w.rglob("*")]:
                os.chown(path, user.pw_uid, user.pw_gid)
        elif pwd.getpwuid(os.geteuid()).pw_name != "ejabberd":
            pytest.fail("ejabberdctl runs only as root or as the ejabberd user")

    def start(self) -> None:
        self.write_files()
        with open(self.workdir / "foreground.log", "wb") as out:
            self.proc = subprocess.Popen(
                self.ctl_args() + ["foreground"], stdin=subprocess.DEVNULL,
                stdout=out, stderr=subprocess.STDOUT,
            )
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                pytest.fail(f"ejabberd exited with {self.proc.returncode}:\n{self.logs()}")
            if self.ctl("status", check=False).returncode == 0:
                return
            time.sleep(0.3)
        pytest.fail(f"ejabberd did not start within 30 s:\n{self.logs()}")

    def register(self, host: str) -> None:
        for n in range(1, ACCOUNTS + 1):
            self.ctl("register", f"user{n}", host, PASSWORD)

    def stop(self) -> None:
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.ctl("stop", check=False)
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                pass
        # Whatever is left of the node (it runs in a session of its own under su).
        for pid in descendants(self.proc.pid):
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(timeout=10)


@pytest.fixture(scope="module")
def ejabberd():
    require_tools()
    loadgen_binary()
    with tempfile.TemporaryDirectory(prefix="loadgen-ejabberd-") as tmp:
        workdir = pathlib.Path(tmp)
        os.chmod(workdir, 0o755)
        server = Ejabberd(workdir)
        try:
            server.start()
            for host in ("localhost", SHA256_HOST):
                server.register(host)
            yield server
        finally:
            server.stop()


def run_loadgen(server: Ejabberd, *args: str) -> dict:
    command = [
        loadgen_binary(), "--host", "127.0.0.1", "--insecure",
        "--password-file", server.workdir / "password", "--to", str(ACCOUNTS),
        "--sessions", "10", "--threads", "2", "--rate", "100", "--duration", "3s",
        "--mix", MIX, "--timeout", "10s", "--json", *args,
    ]
    result = subprocess.run(command, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, f"loadgen failed:\n{result.stderr}\n{server.logs()}"
    summary = json.loads(result.stdout)
    assert summary["pass"] is True, result.stderr
    assert summary["errors"]["total"] == 0, result.stderr
    assert summary["sessions"]["established"] == 10, result.stderr
    assert summary["requests"]["ok"] == summary["requests"]["due"] >= 250, result.stderr
    steps = ("sasl", "bind") if summary["target"]["tls"] == "none" else ("tls", "sasl", "bind")
    for metric in (*steps, "sic0-address", "sic1-address", "disco-info", "ping"):
        assert summary["latency_us"][metric]["count"] > 0, (metric, result.stderr)
    return summary


@pytest.mark.parametrize(
    "host,sasl", [("localhost", "scram-sha-1"), (SHA256_HOST, "scram-sha-256")]
)
def test_starttls_scram_and_sic_against_ejabberd(ejabberd, host, sasl):
    summary = run_loadgen(
        ejabberd, "--port", str(ejabberd.c2s), "--users", f"user%d@{host}", "--sasl", sasl
    )
    assert summary["target"]["tls"] == "starttls"
    assert summary["target"]["sasl"] == sasl.upper()
    # ejabberd (OpenSSL through fast_tls) speaks TLS 1.3: once logged in, every session
    # went on with loadgen's own record layer, and closed cleanly with it.
    assert summary["sessions"]["tls_compacted"] == 10, summary["sessions"]


@pytest.mark.parametrize("version", ["v1", "v2"])
def test_proxy_headers_are_understood_by_ejabberd(ejabberd, version):
    """ejabberd's PROXY parser takes loadgen's header and mod_sic reports its address and
    port; zero errors means no SIC answer named the socket's own address."""
    summary = run_loadgen(
        ejabberd, "--port", str(ejabberd.c2s_proxy), "--sasl", "scram-sha-1",
        "--proxy", version, "--proxy-sources", "198.51.100.0/24,2001:db8::/64",
    )
    assert summary["latency_us"]["proxy"]["count"] == 10


@pytest.mark.parametrize("sasl", ["plain", "scram-sha-1"])
def test_plaintext_logins_against_ejabberd(ejabberd, sasl):
    """--tls none: the stream, SASL and bind on a bare TCP connection."""
    summary = run_loadgen(
        ejabberd, "--port", str(ejabberd.c2s_plain), "--tls", "none", "--sasl", sasl
    )
    assert summary["target"]["tls"] == "none"
    assert "tls" not in summary["latency_us"]
    assert summary["sessions"]["tls_compacted"] == 0
