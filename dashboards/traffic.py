#!/usr/bin/env python3
"""Client traffic for dashboards/check.sh, on the Python standard library alone.

Several threads log in to an edge over STARTTLS and direct TLS (SASL PLAIN, which the edge
offers once the stream is encrypted), bind, ask SIC in its three wire forms, disco#info
and ping, ask a forbidden SIC, and log out, until the time is up. A few deliberate
failures (a wrong password, plaintext on the direct TLS port, malformed XML) give the
error metrics something to count.

usage: traffic.py STARTTLS_PORT DIRECT_TLS_PORT SECONDS USER_PATTERN PASSWORD USERS
"""

import base64
import socket
import ssl
import sys
import threading
import time

HOST = "127.0.0.1"
DOMAIN = "localhost"
HEADER = (
    "<?xml version='1.0'?><stream:stream to='localhost' version='1.0' "
    "xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams'>"
).encode()
SASL_SUCCESS = b"urn:ietf:params:xml:ns:xmpp-sasl'/>"
REQUESTS = [
    "<ip xmlns='urn:xmpp:sic:0'/>",
    "<address xmlns='urn:xmpp:sic:0'/>",
    "<address xmlns='urn:xmpp:sic:1'/>",
    "<query xmlns='http://jabber.org/protocol/disco#info'/>",
    "<ping xmlns='urn:xmpp:ping'/>",
]


def tls_context() -> ssl.SSLContext:
    context = ssl.create_default_context()
    # The edge under test serves a self-signed certificate made at start.
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    return context


class Stream:
    """One XMPP connection, read until expected markers (the edge's own output forms)."""

    def __init__(self, port: int, direct_tls: bool):
        self.sock = socket.create_connection((HOST, port), timeout=10)
        if direct_tls:
            self.sock = tls_context().wrap_socket(self.sock, server_hostname=DOMAIN)
        self.buf = b""

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def until(self, *markers: bytes) -> bytes:
        """Reads until one of `markers` arrives; returns what came up to its end."""
        while True:
            for marker in markers:
                at = self.buf.find(marker)
                if at >= 0:
                    end = at + len(marker)
                    head, self.buf = self.buf[:end], self.buf[end:]
                    return head
            chunk = self.sock.recv(65536)
            if not chunk:
                raise ConnectionError(f"closed while waiting for {markers}: {self.buf[-200:]!r}")
            self.buf += chunk

    def open(self) -> None:
        self.send(HEADER)
        self.until(b"</stream:features>")

    def starttls(self) -> None:
        self.send(b"<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>")
        self.until(b"<proceed xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>")
        self.sock = tls_context().wrap_socket(self.sock, server_hostname=DOMAIN)

    def plain(self, user: str, password: str) -> bool:
        payload = base64.b64encode(f"\0{user}\0{password}".encode()).decode()
        self.send(
            f"<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='PLAIN'>{payload}</auth>"
            .encode()
        )
        return self.until(SASL_SUCCESS, b"</failure>").endswith(SASL_SUCCESS)

    def iq(self, id_: str, kind: str, payload: str, to: str = "") -> None:
        to_attr = f" to='{to}'" if to else ""
        self.send(f"<iq type='{kind}' id='{id_}'{to_attr}>{payload}</iq>".encode())
        self.until(f"id='{id_}'".encode())

    def close(self) -> None:
        self.send(b"</stream:stream>")
        self.until(b"</stream:stream>")
        self.sock.close()


def session(port: int, direct_tls: bool, user: str, password: str, rounds: int) -> None:
    stream = Stream(port, direct_tls)
    stream.open()
    if not direct_tls:
        stream.starttls()
        stream.open()
    if not stream.plain(user, password):
        raise RuntimeError(f"{user} could not log in")
    stream.open()
    stream.iq("bind", "set", "<bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'/>")
    for n in range(rounds):
        for i, payload in enumerate(REQUESTS):
            stream.iq(f"r{n}-{i}", "get", payload)
    stream.iq("forbidden", "get", REQUESTS[0], to=f"someone-else@{DOMAIN}")
    stream.close()


def failures(starttls_port: int, direct_port: int, user: str) -> None:
    """One wrong password, one plaintext client on the TLS port, one malformed stream."""
    stream = Stream(direct_port, True)
    stream.open()
    if stream.plain(user, "wrong password"):
        raise RuntimeError("a wrong password was accepted")
    stream.sock.close()
    raw = socket.create_connection((HOST, direct_port), timeout=10)
    raw.sendall(HEADER)
    while raw.recv(4096):
        pass
    raw.close()
    stream = Stream(starttls_port, False)
    stream.open()
    stream.send(b"<iq type='get' id='x'><unclosed></iq>")
    stream.until(b"</stream:stream>")
    stream.sock.close()


def main() -> int:
    starttls_port, direct_port, seconds = int(sys.argv[1]), int(sys.argv[2]), float(sys.argv[3])
    pattern, password, users = sys.argv[4], sys.argv[5], int(sys.argv[6])
    deadline = time.monotonic() + seconds
    errors: list[str] = []
    sessions = [0]
    lock = threading.Lock()

    def worker(number: int) -> None:
        user = pattern.replace("%d", str(number))
        n = 0
        try:
            while time.monotonic() < deadline:
                session(direct_port if n % 2 else starttls_port, n % 2 == 1, user, password, 5)
                n += 1
                with lock:
                    sessions[0] += 1
        except Exception as error:  # noqa: BLE001 - reported and counted as a failure
            with lock:
                errors.append(f"{user}: {error!r}")

    failures(starttls_port, direct_port, pattern.replace("%d", "1"))
    threads = [threading.Thread(target=worker, args=(n,)) for n in range(1, users + 1)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    print(f"traffic: {sessions[0]} sessions, {len(errors)} errors")
    for error in errors:
        print(f"traffic error: {error}", file=sys.stderr)
    return 1 if errors or sessions[0] == 0 else 0


if __name__ == "__main__":
    sys.exit(main())
