"""slixmpp, a real third-party client, against the real edge over STARTTLS and direct TLS.

Every SIC answer must carry the address and port this client's socket has, as the
client itself sees them, in each of the three wire forms real clients use.
"""

import asyncio
import ssl
import xml.etree.ElementTree as ET

import pytest
import slixmpp
from slixmpp.exceptions import IqError

from conftest import DOMAIN, PASSWORD

SIC0 = "urn:xmpp:sic:0"
SIC1 = "urn:xmpp:sic:1"
HOSTS = ["127.0.0.1", "::1"]


class Client(slixmpp.ClientXMPP):
    """A slixmpp client that logs in and reports its own socket address."""

    def __init__(self, jid: str, direct_tls: bool, mechanism: str | None):
        super().__init__(jid, PASSWORD, sasl_mech=mechanism)
        for plugin in ("xep_0030", "xep_0199", "xep_0279"):
            self.register_plugin(plugin)
        self.enable_direct_tls = direct_tls
        self.enable_starttls = not direct_tls
        self.enable_plaintext = False
        # The edge runs on its self-signed certificate in these tests.
        self.ssl_context.check_hostname = False
        self.ssl_context.verify_mode = ssl.CERT_NONE
        self.started = asyncio.Event()
        self.auth_failed = asyncio.Event()
        self.add_event_handler("session_start", lambda _: self.started.set())
        self.add_event_handler("failed_all_auth", lambda _: self.auth_failed.set())

    async def login(self, host: str, port: int) -> None:
        self.connect(host, port)
        done, _ = await asyncio.wait(
            [asyncio.ensure_future(self.started.wait()),
             asyncio.ensure_future(self.auth_failed.wait())],
            timeout=20, return_when=asyncio.FIRST_COMPLETED,
        )
        assert done, "no session within 20 s"
        assert self.started.is_set(), "authentication failed"

    def own_address(self) -> tuple[str, int]:
        host, port = self.transport.get_extra_info("sockname")[:2]
        return host, port

    async def raw_get(self, payload: str, to: str | None = None):
        iq = self.Iq()
        iq["type"] = "get"
        if to:
            iq["to"] = to
        iq.append(ET.fromstring(payload))
        return await iq.send(timeout=10)


async def with_client(host, port, direct_tls, scenario, user="alice", mechanism=None):
    client = Client(f"{user}@{DOMAIN}", direct_tls, mechanism)
    try:
        await client.login(host, port)
        await scenario(client)
    finally:
        client.disconnect()
        await asyncio.sleep(0)


async def all_sic_forms(client: Client) -> None:
    host, port = client.own_address()

    # sic:0 <ip/> through slixmpp's own XEP-0279 plugin.
    reply = await client.plugin["xep_0279"].check_ip(timeout=10)
    assert reply["ip_check"] == host

    reply = await client.raw_get(f"<address xmlns='{SIC0}'/>")
    assert reply.xml.find(f"{{{SIC0}}}address/{{{SIC0}}}ip").text == host

    reply = await client.raw_get(f"<address xmlns='{SIC1}'/>", to=DOMAIN)
    address = reply.xml.find(f"{{{SIC1}}}address")
    assert address.find(f"{{{SIC1}}}ip").text == host
    assert int(address.find(f"{{{SIC1}}}port").text) == port

    # Addressed to the requester's own bare and full JID it is answered too.
    for own in (client.boundjid.bare, client.boundjid.full):
        reply = await client.raw_get(f"<address xmlns='{SIC1}'/>", to=own)
        assert int(reply.xml.find(f"{{{SIC1}}}address/{{{SIC1}}}port").text) == port


@pytest.mark.parametrize("host", HOSTS)
@pytest.mark.parametrize("mechanism", ["SCRAM-SHA-256", "SCRAM-SHA-1", None])
def test_starttls_scram_every_sic_form(edge, host, mechanism):
    asyncio.run(with_client(host, edge.starttls[host], False, all_sic_forms,
                            mechanism=mechanism))


@pytest.mark.parametrize("host", HOSTS)
def test_direct_tls_every_sic_form(edge, host):
    asyncio.run(with_client(host, edge.direct_tls[host], True, all_sic_forms))


@pytest.mark.parametrize("host", HOSTS)
def test_disco_and_ping(edge, host):
    async def scenario(client: Client) -> None:
        info = await client.plugin["xep_0030"].get_info(jid=DOMAIN, timeout=10)
        features = set(info["disco_info"]["features"])
        assert {SIC0, SIC1, "urn:xmpp:ping", "http://jabber.org/protocol/disco#info",
                "http://jabber.org/protocol/disco#items"} <= features
        items = await client.plugin["xep_0030"].get_items(jid=DOMAIN, timeout=10)
        assert list(items["disco_items"]["items"]) == []
        rtt = await client.plugin["xep_0199"].ping(jid=DOMAIN, timeout=10)
        assert rtt >= 0

    asyncio.run(with_client(host, edge.starttls[host], False, scenario))


def test_sic_for_another_users_jid_is_forbidden(edge):
    async def scenario(client: Client) -> None:
        for payload in (f"<ip xmlns='{SIC0}'/>", f"<address xmlns='{SIC1}'/>"):
            with pytest.raises(IqError) as error:
                await client.raw_get(payload, to=f"bob@{DOMAIN}")
            assert error.value.condition == "forbidden"
            assert error.value.iq.xml.find(f"{{{SIC1}}}address") is None

    asyncio.run(with_client("127.0.0.1", edge.starttls["127.0.0.1"], False, scenario))


def test_unknown_iq_is_service_unavailable(edge):
    async def scenario(client: Client) -> None:
        with pytest.raises(IqError) as error:
            await client.raw_get("<query xmlns='jabber:iq:version'/>", to=DOMAIN)
        assert error.value.condition == "service-unavailable"

    asyncio.run(with_client("127.0.0.1", edge.starttls["127.0.0.1"], False, scenario))


def test_wrong_password_fails(edge):
    async def attempt() -> None:
        client = Client(f"alice@{DOMAIN}", False, "SCRAM-SHA-256")
        client.password = "wrong"
        client.connect("127.0.0.1", edge.starttls["127.0.0.1"])
        try:
            await asyncio.wait_for(client.auth_failed.wait(), 20)
            assert not client.started.is_set()
        finally:
            client.disconnect()

    asyncio.run(attempt())
