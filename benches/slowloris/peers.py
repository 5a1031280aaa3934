#!/usr/bin/env python3
"""Slow peers for benches/slowloris/run: one process holds COUNT connections of each kind
open, each as slow as its kind, and opens a new one whenever the server drops one, until
SIGUSR1; then it waits for the server to drop the rest and prints one JSON line with what
it saw per kind: connections opened, dropped by the server (EOF or reset), still open
when it gave up, connect errors, and how long the dropped ones lived.

Kinds:
  trickle  the stream header to the STARTTLS port, one byte every --trickle-every seconds
  proxy    connect to a PROXY-required listener and send nothing
  tls      connect to the direct-TLS port, send a partial ClientHello (even slots) or
           nothing (odd slots)
"""

import argparse
import asyncio
import json
import signal
import socket
import sys
import time

HEADER = (b"<?xml version='1.0'?><stream:stream to='localhost' xmlns='jabber:client' "
          b"xmlns:stream='http://etherx.jabber.org/streams' version='1.0'>")
# A TLS record header announcing a 512-byte handshake message, and its first bytes: a
# ClientHello (type 1) of 508 bytes, version TLS 1.2, the start of the random.
PARTIAL_CLIENT_HELLO = bytes([0x16, 0x03, 0x01, 0x02, 0x00, 0x01, 0x00, 0x01, 0xFC,
                              0x03, 0x03]) + bytes(range(21))


class Stats:
    def __init__(self):
        self.opened = 0
        self.dropped = 0
        self.connect_errors = 0
        self.lifetimes = []  # seconds from connect to the server's close
        self.open_now = 0


async def drain_until_closed(reader):
    """Reads (and discards) until the server closes; True if it did."""
    try:
        while True:
            data = await reader.read(4096)
            if not data:
                return True
    except (ConnectionError, OSError):
        return True


async def peer(kind, slot, args, stats, stopping, local):
    port = {"trickle": args.starttls_port, "proxy": args.proxy_port,
            "tls": args.tls_port}[kind]
    while not stopping.is_set():
        # From before the connect: the edge's timers start at accept, which is later, so a
        # lifetime shorter than the timeout is the edge dropping early. A busy event loop
        # notices the close late, so lifetimes run longer than the timeout, not shorter.
        opened = time.monotonic()
        try:
            reader, writer = await asyncio.open_connection(
                args.host, port, local_addr=(local, 0))
        except OSError:
            stats.connect_errors += 1
            await asyncio.sleep(0.5)
            continue
        stats.opened += 1
        stats.open_now += 1
        closed = asyncio.ensure_future(drain_until_closed(reader))
        try:
            if kind == "trickle":
                for i in range(len(HEADER)):
                    writer.write(HEADER[i:i + 1])
                    done, _ = await asyncio.wait([closed], timeout=args.trickle_every)
                    if done:
                        break
            elif kind == "tls" and slot % 2 == 0:
                writer.write(PARTIAL_CLIENT_HELLO)
        except (ConnectionError, OSError):
            pass
        await closed
        stats.lifetimes.append(time.monotonic() - opened)
        stats.dropped += 1
        stats.open_now -= 1
        writer.transport.abort()
        if args.once:
            return


async def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--local", default="127.0.0.1", help="source address to bind")
    ap.add_argument("--starttls-port", type=int, required=True)
    ap.add_argument("--proxy-port", type=int, required=True)
    ap.add_argument("--tls-port", type=int, required=True)
    ap.add_argument("--trickle", type=int, default=0)
    ap.add_argument("--proxy", type=int, default=0)
    ap.add_argument("--tls", type=int, default=0)
    ap.add_argument("--trickle-every", type=float, default=2.0)
    ap.add_argument("--once", action="store_true",
                    help="connect each peer once; do not reconnect after a drop")
    ap.add_argument("--ramp", type=float, default=2.0, help="seconds to open them all")
    ap.add_argument("--give-up", type=float, default=20.0,
                    help="after SIGUSR1, how long to wait for the server's drops")
    args = ap.parse_args()

    loop = asyncio.get_running_loop()
    stopping = asyncio.Event()
    loop.add_signal_handler(signal.SIGUSR1, stopping.set)
    kinds = {"trickle": args.trickle, "proxy": args.proxy, "tls": args.tls}
    stats = {k: Stats() for k in kinds}
    total = sum(kinds.values())
    tasks = []
    started = time.monotonic()
    n = 0
    for kind, count in kinds.items():
        for slot in range(count):
            tasks.append(asyncio.ensure_future(
                peer(kind, slot, args, stats[kind], stopping, args.local)))
            n += 1
            # Spread the connects over the ramp, in batches of 50.
            if n % 50 == 0:
                await asyncio.sleep(max(0.0, started + args.ramp * n / total
                                        - time.monotonic()))
    while sum(s.opened for s in stats.values()) < total:
        await asyncio.sleep(0.05)
    print(json.dumps({"ready": True, "seconds": time.monotonic() - started}), flush=True)
    await stopping.wait()
    _, pending = await asyncio.wait(tasks, timeout=args.give_up)
    for t in pending:
        t.cancel()
    out = {}
    for kind, s in stats.items():
        lt = sorted(s.lifetimes)
        out[kind] = {
            "peers": kinds[kind], "opened": s.opened, "dropped": s.dropped,
            "still_open": s.opened - s.dropped, "connect_errors": s.connect_errors,
            "lifetime_min": lt[0] if lt else None,
            "lifetime_median": lt[len(lt) // 2] if lt else None,
            "lifetime_p99": lt[len(lt) * 99 // 100] if lt else None,
            "lifetime_max": lt[-1] if lt else None,
        }
    print(json.dumps(out), flush=True)


if __name__ == "__main__":
    try:
        sys.exit(asyncio.run(main()))
    except KeyboardInterrupt:
        pass
