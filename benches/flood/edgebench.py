"""Shared pieces of benches/flood/run and benches/slowloris/run: build and find the
release binaries, write an edge config, start the edge and wait until it is ready, scrape
/metrics, read a process's CPU time from /proc, and run loadgen with --json."""

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
CLK_TCK = os.sysconf("SC_CLK_TCK")


def say(*args):
    print(*args, flush=True)


def binaries():
    """The release xmpp-edge and loadgen (XMPP_EDGE_BIN / LOADGEN_BIN override them)."""
    edge = os.environ.get("XMPP_EDGE_BIN")
    loadgen = os.environ.get("LOADGEN_BIN")
    if not (edge and loadgen):
        subprocess.run(
            ["cargo", "build", "--release", "-q", "-p", "edge", "-p", "loadgen"],
            cwd=ROOT, check=True)
        target = os.environ.get("CARGO_TARGET_DIR", os.path.join(ROOT, "target"))
        edge = edge or os.path.join(target, "release", "xmpp-edge")
        loadgen = loadgen or os.path.join(target, "release", "loadgen")
    return edge, loadgen


class Edge:
    """An xmpp-edge process in a temporary directory, with accounts user1..userN."""

    def __init__(self, edge_bin, config_body, accounts, admin_port, password="secret"):
        self.bin = edge_bin
        self.dir = tempfile.mkdtemp(prefix="xmpp-edge-bench-")
        self.admin = f"127.0.0.1:{admin_port}"
        self._add_users(accounts, password)
        with open(os.path.join(self.dir, "pw"), "w") as f:
            f.write(password + "\n")
        with open(os.path.join(self.dir, "wrong-pw"), "w") as f:
            f.write("not-" + password + "\n")
        self.config = os.path.join(self.dir, "edge.toml")
        with open(self.config, "w") as f:
            f.write('domains = ["localhost"]\nusers_file = "users.toml"\n')
            f.write(config_body)
            f.write(f'\n[admin]\nenabled = true\naddress = "{self.admin}"\n')
        subprocess.run([edge_bin, "check-config", self.config], check=True,
                       stdout=subprocess.DEVNULL)
        self.log = open(os.path.join(self.dir, "edge.log"), "w")
        self.proc = subprocess.Popen([edge_bin, "--config", self.config], cwd=self.dir,
                                     stdout=self.log, stderr=subprocess.STDOUT)
        deadline = time.time() + 20
        while True:
            if self.proc.poll() is not None:
                sys.exit(f"the edge exited at start; see {self.log.name}")
            try:
                with urllib.request.urlopen(f"http://{self.admin}/readyz", timeout=1) as r:
                    if r.status == 200:
                        break
            except OSError:
                pass
            if time.time() > deadline:
                sys.exit("the edge did not become ready in 20 s")
            time.sleep(0.1)

    def _add_users(self, accounts, password):
        subprocess.run(
            [self.bin, "user", "add-range", "user%d@localhost", "--from", "1", "--to",
             str(accounts), "--password-stdin"],
            input=password + "\n", text=True, check=True, cwd=self.dir,
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def metrics(self):
        """The /metrics scrape as {(name, frozenset(labels)): value}."""
        with urllib.request.urlopen(f"http://{self.admin}/metrics", timeout=5) as r:
            text = r.read().decode()
        out = {}
        for line in text.splitlines():
            if not line or line.startswith("#"):
                continue
            m = re.match(r'^([a-zA-Z_:][\w:]*)(?:\{(.*)\})?\s+(\S+)', line)
            if not m:
                continue
            labels = frozenset(re.findall(r'(\w+)="((?:[^"\\]|\\.)*)"', m.group(2) or ""))
            try:
                out[(m.group(1), labels)] = float(m.group(3))
            except ValueError:
                pass
        return out

    def cpu_seconds(self):
        """utime + stime of the edge (all threads), from /proc."""
        return cpu_of(self.proc.pid)

    def cleanup(self):
        """Removes the temporary directory (kept when a run fails, for its logs)."""
        shutil.rmtree(self.dir, ignore_errors=True)

    def threads(self):
        return len(os.listdir(f"/proc/{self.proc.pid}/task"))

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()


def cpu_of(pid):
    """utime + stime of a process (all threads), from /proc."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def total(scrape, name, **labels):
    """Sum of the samples of `name` whose labels include `labels`."""
    want = set(labels.items())
    return sum(v for (n, ls), v in scrape.items() if n == name and want <= ls)


def delta(before, after, name, **labels):
    return total(after, name, **labels) - total(before, name, **labels)


def loadgen_cmd(loadgen_bin, edge, *args):
    return [loadgen_bin, "--insecure", "--json", *map(str, args)]


def run_loadgen(cmd, label, log_dir):
    """Runs loadgen to completion; returns its JSON summary."""
    say("   $ " + " ".join(os.path.basename(c) if i == 0 else c for i, c in enumerate(cmd)))
    err_path = os.path.join(log_dir, f"loadgen-{label}.txt")
    with open(err_path, "w") as err:
        done = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=err, text=True)
    try:
        summary = json.loads(done.stdout)
        summary["loadavg_after"] = loadavg()
        return summary
    except json.JSONDecodeError:
        sys.exit(f"loadgen ({label}) printed no JSON summary (exit {done.returncode}); "
                 f"see {err_path}")


def fmt_us(us):
    return f"{us / 1000:.2f}ms" if us >= 1000 else f"{us:.0f}µs"


def loadavg():
    """The 1-minute load average: the machine is shared, and p99 shows it."""
    with open("/proc/loadavg") as f:
        return float(f.read().split()[0])
