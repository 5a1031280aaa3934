#!/usr/bin/env python3
"""Writes the seed inputs in seeds/<target>/ (see fuzz/README.md for the input layouts).
Run it after changing a layout: python3 fuzz/seeds/make.py"""
import base64, os, struct

HERE = os.path.dirname(os.path.abspath(__file__))
HEADER = ("<?xml version='1.0'?><stream:stream xmlns='jabber:client' "
          "xmlns:stream='http://etherx.jabber.org/streams' to='localhost' version='1.0'>")
SASL = "urn:ietf:params:xml:ns:xmpp-sasl"
PLAIN_PAYLOAD = base64.b64encode(b"\0alice\0secret").decode()
PLAIN = f"<auth xmlns='{SASL}' mechanism='PLAIN'>{PLAIN_PAYLOAD}</auth>"
BIND = ("<iq type='set' id='b'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'>"
        "<resource>r</resource></bind></iq>")
STANZAS = ("<iq type='get' id='1'><ping xmlns='urn:xmpp:ping'/></iq>"
           "<iq type='get' id='2' to='localhost'><query xmlns='http://jabber.org/protocol/disco#info'/></iq>"
           "<iq type='get' id='3'><query xmlns='http://jabber.org/protocol/disco#items'/></iq>"
           "<iq type='get' id='4'><address xmlns='urn:xmpp:sic:1'/></iq>"
           "<iq type='get' id='5'><ip xmlns='urn:xmpp:sic:0'/></iq>"
           "<iq type='set' id='6'><session xmlns='urn:ietf:params:xml:ns:xmpp-session'/></iq>"
           "<message to='bob@localhost' id='m'><body>hi &amp; bye</body></message>"
           "<presence/> </stream:stream>")

def tokenizer(name, mode, data):
    os.makedirs(os.path.join(HERE, "tokenizer"), exist_ok=True)
    with open(os.path.join(HERE, "tokenizer", name), "wb") as f:
        f.write(bytes([mode, 1, 2]) + data.encode())

# Mode: bit 7 small limits, the rest picks the read size (1, 2, 7, 64, 1500).
tokenizer("stream", 0x02, HEADER + "<message to='a@b'><body>hi &amp; bye</body></message>"
          " <iq type='get' id='1'><ping xmlns='urn:xmpp:ping'/></iq></stream:stream>")
tokenizer("prefixes-small-limits", 0x83, HEADER + "<x:a xmlns:x='urn:x' x:b='&#x41;'>"
          "<![CDATA[<]]>text<!-- c --></x:a>")

def session(name, phase, flags, data, ops=b""):
    with open(os.path.join(HERE, "session", name), "wb") as f:
        f.write(bytes([phase, flags, len(ops)]) + ops + data.encode())

# Phase numbers as in fuzz_targets/session.rs: 0 fresh, 1 opened, 2 TLS pending,
# 3 after TLS, 4 secure opened, 5 SCRAM, 6 authenticated, 7 auth opened, 8 bound.
# Flags: 1 small limits, 2 tight budgets, 4 small output, 8 TLS optional, 16 TLS 1.2,
# 32 direct TLS, 64 PLAIN, 128 PLUS.
session("fresh-starttls", 0x70, 0, HEADER + "<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>")
session("fresh-plaintext-sasl", 0x70, 8, HEADER + PLAIN)
session("opened-injection", 0x71, 0, "<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'/><iq/>")
session("tls-pending-early", 0x72, 0, HEADER, ops=bytes([0x40 | 31]))
session("after-tls", 0x73, 0, HEADER + PLAIN + HEADER + BIND + STANZAS)
session("secure-plain", 0x74, 0, PLAIN + HEADER + BIND + STANZAS)
session("scram-bad-proof", 0x75, 0,
        f"<response xmlns='{SASL}'>{base64.b64encode(b'c=biws,r=x,p=AAAA').decode()}</response>"
        f"<abort xmlns='{SASL}'/>")
session("authenticated", 0x76, 0, HEADER + BIND + STANZAS)
session("auth-opened", 0x77, 0x40, BIND + BIND + STANZAS)
session("bound", 0x78, 0, STANZAS)
session("bound-throttled", 0x78, 0x07, STANZAS * 3,
        ops=bytes([0x40 | 28, 0x60 | 17, 0x40 | 31, 0x80 | 3, 0x00 | 20]))
session("bound-direct-tls12", 0x08, 0x30, STANZAS, ops=bytes([0xa0, 0x80 | 31]))
session("bound-timeouts", 0x78, 0, "<presence/>", ops=bytes([0x80, 0x81, 0x80 | 30, 0xa2]))

# A pipelining client that never quite catches up with its reads (op 7 repeats the last
# read 32 times, each time reading back all but 3 bytes).
PING = "<iq type='get' id='p'><ping xmlns='urn:xmpp:ping'/></iq>"
PING = PING.replace("id='p'", "id='" + "p" * (64 - len(PING) + 1) + "'")
assert len(PING) == 64
session("bound-pipelining", 0x78, 0x01, PING, ops=bytes([0x00 | 19] + [0xe0 | 31] * 16))

def v2(command, family, block):
    return b"\r\n\r\n\0\r\nQUIT\n" + bytes([0x20 | command, family]) + struct.pack(">H", len(block)) + block

def proxy(name, mode, data):
    with open(os.path.join(HERE, "proxy_header", name), "wb") as f:
        f.write(bytes([mode, 0x34, 0x12]) + data)

proxy("v1-tcp4", 0x28, b"PROXY TCP4 203.0.113.7 192.0.2.1 40001 5222\r\n<?xml")
proxy("v1-tcp6", 0x10, b"PROXY TCP6 2001:db8::7 ::ffff:192.0.2.1 40001 5222\r\n")
proxy("v1-unknown", 0x00, b"PROXY UNKNOWN ignored\r\nhello")
def crc32c(data):
    crc = 0xFFFFFFFF
    for b in data:
        crc ^= b
        for _ in range(8):
            crc = (crc >> 1) ^ (0x82F63B78 if crc & 1 else 0)
    return crc ^ 0xFFFFFFFF

tcp4 = bytes([203, 0, 113, 7, 192, 0, 2, 1]) + struct.pack(">HH", 40001, 5222)
tlvs = b"\x02\x00\x0bexample.com" + b"\xea\x00\x06\x01vpce1" + b"\x04\x00\x00"
proxy("v2-tcp4-tlvs", 0x08, v2(1, 0x11, tcp4 + tlvs))
crc_block = tcp4 + b"\x03\x00\x04\0\0\0\0"
header = v2(1, 0x11, crc_block)
header = header[:-4] + struct.pack(">I", crc32c(header))
proxy("v2-tcp4-crc", 0x18, header)
proxy("v2-tcp6", 0x20, v2(1, 0x21, bytes(range(32)) + struct.pack(">HH", 1, 2)))
proxy("v2-local-unix", 0x30, v2(0, 0x31, bytes(216)))
proxy("v2-unspec", 0x07, v2(1, 0x00, b""))
