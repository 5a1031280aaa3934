"""aioxmpp, a second independent client library, against the real edge over STARTTLS.

aioxmpp negotiates STARTTLS, SASL and bind with its own code (aiosasl, aioopenssl), so
it catches what a single client's leniency would hide.
"""

import asyncio

import aioxmpp
import aioxmpp.connector
import aioxmpp.errors
import aioxmpp.xso as xso
import pytest

from conftest import DOMAIN, PASSWORD

SIC0 = "urn:xmpp:sic:0"
SIC1 = "urn:xmpp:sic:1"


@aioxmpp.IQ.as_payload_class
class Sic1Address(xso.XSO):
    TAG = (SIC1, "address")
    ip = xso.ChildText((SIC1, "ip"), default=None)
    port = xso.ChildText((SIC1, "port"), default=None)


@aioxmpp.IQ.as_payload_class
class Sic0Address(xso.XSO):
    TAG = (SIC0, "address")
    ip = xso.ChildText((SIC0, "ip"), default=None)


@aioxmpp.IQ.as_payload_class
class Sic0Ip(xso.XSO):
    TAG = (SIC0, "ip")
    text = xso.Text(default=None)


def own_address(client: aioxmpp.Client) -> tuple[str, int]:
    # aioxmpp exposes no public accessor for the socket of the live stream.
    sock = client.stream._xmlstream.transport.get_extra_info("socket")
    host, port = sock.getsockname()[:2]
    return host, port


async def run_client(host: str, port: int, scenario) -> None:
    client = aioxmpp.Client(
        aioxmpp.JID.fromstr(f"alice@{DOMAIN}"),
        aioxmpp.make_security_layer(PASSWORD, no_verify=True),
        override_peer=[(host, port, aioxmpp.connector.STARTTLSConnector())],
    )
    async with asyncio.timeout(30):
        async with client.connected():
            await scenario(client)


async def get(client, payload, to=DOMAIN):
    iq = aioxmpp.IQ(type_=aioxmpp.IQType.GET, payload=payload,
                    to=aioxmpp.JID.fromstr(to) if to else None)
    return await client.send(iq)


@pytest.mark.parametrize("host", ["127.0.0.1", "::1"])
def test_aioxmpp_every_sic_form(edge, host):
    async def scenario(client):
        ip, port = own_address(client)
        assert (await get(client, Sic0Ip(), to=None)).text == ip
        assert (await get(client, Sic0Address())).ip == ip
        answer = await get(client, Sic1Address(), to=str(client.local_jid))
        assert (answer.ip, int(answer.port)) == (ip, port)

    asyncio.run(run_client(host, edge.starttls[host], scenario))


def test_aioxmpp_forbidden_for_other_jid(edge):
    async def scenario(client):
        with pytest.raises(aioxmpp.errors.XMPPAuthError) as error:
            await get(client, Sic1Address(), to=f"bob@{DOMAIN}/phone")
        assert error.value.condition == aioxmpp.ErrorCondition.FORBIDDEN

    asyncio.run(run_client("127.0.0.1", edge.starttls["127.0.0.1"], scenario))
