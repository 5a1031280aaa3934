//! Stanzas after binding: SIC in its three forms, disco, ping, the IQ rules, binding and
//! messages.

use std::net::SocketAddr;

use session::{Config, Event, ListenerKind};

use crate::client::{Client, DOMAIN, Element, TLS13};

const SIC0: &str = "urn:xmpp:sic:0";
const SIC1: &str = "urn:xmpp:sic:1";

fn logged_in(client_addr: &str) -> (Client, String) {
    let addr: SocketAddr = client_addr.parse().expect("address");
    let mut client = Client::with(Config::default(), ListenerKind::Starttls, None, addr);
    let jid = client.login();
    (client, jid)
}

/// The address text of a SIC answer in any form, and the port if the form has one.
fn sic_answer(reply: &Element) -> (String, Option<String>) {
    assert_eq!(reply.attr("type"), Some("result"), "{reply:?}");
    let payload = reply.only_child();
    match (payload.name.as_str(), payload.ns.as_str()) {
        ("ip", SIC0) => (payload.text.clone(), None),
        ("address", SIC0 | SIC1) => (
            payload.child("ip").expect("ip").text.clone(),
            payload.child("port").map(|p| p.text.clone()),
        ),
        other => panic!("not a SIC answer: {other:?}"),
    }
}

#[test]
fn sic_all_forms_all_address_families() {
    for (client_addr, ip, port) in [
        ("203.0.113.7:40001", "203.0.113.7", "40001"),
        ("[2001:db8::42]:5000", "2001:db8::42", "5000"),
        ("[::ffff:198.51.100.9]:61000", "198.51.100.9", "61000"),
    ] {
        let (mut client, _) = logged_in(client_addr);
        let reply = client.iq("get", None, &format!("<ip xmlns='{SIC0}'/>"));
        assert_eq!(sic_answer(&reply), (ip.to_owned(), None));
        let reply = client.iq("get", None, &format!("<address xmlns='{SIC0}'/>"));
        assert_eq!(sic_answer(&reply), (ip.to_owned(), None));
        let reply = client.iq("get", None, &format!("<address xmlns='{SIC1}'/>"));
        assert_eq!(sic_answer(&reply), (ip.to_owned(), Some(port.to_owned())));
    }
}

/// A request without `to` is answered without `from`; one to the domain, from the domain.
#[test]
fn sic_exact_wire_form() {
    let (mut client, jid) = logged_in("203.0.113.7:40001");
    client.take_raw();
    client.send("<iq type='get' id='a1'><ip xmlns='urn:xmpp:sic:0'/></iq>");
    assert_eq!(
        client.take_raw(),
        format!(
            "<iq type='result' id='a1' to='{jid}'>\
             <ip xmlns='urn:xmpp:sic:0'>203.0.113.7</ip></iq>"
        )
    );
    client.send(&format!(
        "<iq type='get' id='a2' to='{DOMAIN}'><address xmlns='urn:xmpp:sic:1'/></iq>"
    ));
    assert_eq!(
        client.take_raw(),
        format!(
            "<iq type='result' id='a2' to='{jid}' from='localhost'><address xmlns='urn:xmpp:sic:1'>\
             <ip>203.0.113.7</ip><port>40001</port></address></iq>"
        )
    );
}

#[test]
fn sic_answered_for_server_and_own_jids() {
    let (mut client, jid) = logged_in("203.0.113.7:40001");
    let bare = jid.split('/').next().expect("bare").to_owned();
    let upper_full = jid.replace("localhost", "LOCALHOST");
    for to in [DOMAIN, "LocalHost", &bare, &jid, &upper_full] {
        let reply = client.iq("get", Some(to), &format!("<address xmlns='{SIC1}'/>"));
        assert_eq!(sic_answer(&reply).0, "203.0.113.7", "to={to}");
        assert_eq!(
            reply.attr("from"),
            Some(to),
            "from echoes what was addressed"
        );
        assert_eq!(reply.attr("to"), Some(jid.as_str()));
    }
}

#[test]
fn sic_for_anyone_else_is_forbidden() {
    let (mut client, _) = logged_in("203.0.113.7:40001");
    for to in [
        "bob@localhost",
        "alice@localhost/other",
        "localhost/res",
        "other.example",
    ] {
        for payload in [
            format!("<ip xmlns='{SIC0}'/>"),
            format!("<address xmlns='{SIC0}'/>"),
            format!("<address xmlns='{SIC1}'/>"),
        ] {
            let reply = client.iq("get", Some(to), &payload);
            assert_eq!(
                reply.stanza_error(),
                ("auth".to_owned(), "forbidden".to_owned())
            );
            assert_eq!(reply.attr("from"), Some(to));
            assert!(reply.child("address").is_none() && reply.child("ip").is_none());
        }
    }
}

#[test]
fn sic_set_is_bad_request() {
    let (mut client, _) = logged_in("203.0.113.7:40001");
    let reply = client.iq("set", None, &format!("<ip xmlns='{SIC0}'/>"));
    assert_eq!(
        reply.stanza_error(),
        ("modify".to_owned(), "bad-request".to_owned())
    );
}

#[test]
fn malformed_to_is_jid_malformed() {
    let (mut client, _) = logged_in("203.0.113.7:40001");
    for to in ["@localhost", "alice@", "localhost/", "a b@localhost"] {
        let reply = client.iq("get", Some(to), &format!("<ip xmlns='{SIC0}'/>"));
        assert_eq!(
            reply.stanza_error(),
            ("modify".to_owned(), "jid-malformed".to_owned())
        );
        assert_eq!(reply.attr("from"), Some(DOMAIN));
    }
}

#[test]
fn disco_info_of_the_server() {
    let (mut client, _) = logged_in("203.0.113.7:40001");
    for to in [None, Some(DOMAIN)] {
        let reply = client.iq(
            "get",
            to,
            "<query xmlns='http://jabber.org/protocol/disco#info'/>",
        );
        assert_eq!(reply.attr("type"), Some("result"));
        let query = reply.only_child();
        let identity = query.child("identity").expect("identity");
        assert_eq!(identity.attr("category"), Some("server"));
        assert_eq!(identity.attr("type"), Some("im"));
        assert_eq!(identity.attr("name"), Some("xmpp-edge"));
        let features: Vec<_> = query
            .children
            .iter()
            .filter(|c| c.name == "feature")
            .filter_map(|c| c.attr("var"))
            .collect();
        assert_eq!(
            features,
            [
                "http://jabber.org/protocol/disco#info",
                "http://jabber.org/protocol/disco#items",
                "urn:xmpp:ping",
                "urn:xmpp:sic:0",
                "urn:xmpp:sic:1",
            ]
        );
    }
}

#[test]
fn disco_items_are_empty() {
    let (mut client, jid) = logged_in("203.0.113.7:40001");
    let bare = jid.split('/').next().expect("bare").to_owned();
    for to in [DOMAIN, &bare] {
        let reply = client.iq(
            "get",
            Some(to),
            "<query xmlns='http://jabber.org/protocol/disco#items'/>",
        );
        assert_eq!(reply.attr("type"), Some("result"));
        let query = reply.only_child();
        assert_eq!(query.ns, "http://jabber.org/protocol/disco#items");
        assert!(query.children.is_empty());
    }
}

#[test]
fn disco_info_of_own_account() {
    let (mut client, _) = logged_in("203.0.113.7:40001");
    let reply = client.iq(
        "get",
        Some("alice@localhost"),
        "<query xmlns='http://jabber.org/protocol/disco#info'/>",
    );
    let identity = reply
        .only_child()
        .child("identity")
        .expect("identity")
        .clone();
    assert_eq!(identity.attr("category"), Some("account"));
    assert_eq!(identity.attr("type"), Some("registered"));
}

#[test]
fn disco_elsewhere_or_with_node() {
    let (mut client, jid) = logged_in("203.0.113.7:40001");
    let info = "<query xmlns='http://jabber.org/protocol/disco#info'/>";
    for to in ["bob@localhost", jid.as_str(), "other.example"] {
        let reply = client.iq("get", Some(to), info);
        assert_eq!(
            reply.stanza_error(),
            ("cancel".to_owned(), "service-unavailable".to_owned())
        );
    }
    let reply = client.iq(
        "get",
        Some(DOMAIN),
        "<query xmlns='http://jabber.org/protocol/disco#info' node='x'/>",
    );
    assert_eq!(
        reply.stanza_error(),
        ("cancel".to_owned(), "item-not-found".to_owned())
    );
}

#[test]
fn ping() {
    let (mut client, jid) = logged_in("203.0.113.7:40001");
    let reply = client.iq("get", Some(DOMAIN), "<ping xmlns='urn:xmpp:ping'/>");
    assert_eq!(reply.attr("type"), Some("result"));
    assert!(reply.children.is_empty());
    assert_eq!(reply.attr("from"), Some(DOMAIN));
    assert_eq!(reply.attr("to"), Some(jid.as_str()));
    let reply = client.iq("get", None, "<ping xmlns='urn:xmpp:ping'/>");
    assert_eq!(reply.attr("type"), Some("result"));
    let reply = client.iq(
        "get",
        Some("bob@localhost"),
        "<ping xmlns='urn:xmpp:ping'/>",
    );
    assert_eq!(reply.stanza_error().1, "service-unavailable");
}

#[test]
fn unknown_iq_is_service_unavailable() {
    let (mut client, _) = logged_in("203.0.113.7:40001");
    for kind in ["get", "set"] {
        let reply = client.iq(kind, Some(DOMAIN), "<query xmlns='jabber:iq:version'/>");
        assert_eq!(
            reply.stanza_error(),
            ("cancel".to_owned(), "service-unavailable".to_owned())
        );
    }
}

#[test]
fn iq_shape_rules_are_bad_request() {
    let (mut client, _) = logged_in("203.0.113.7:40001");
    // Not exactly one child.
    let reply = client.iq("get", None, "");
    assert_eq!(reply.stanza_error().1, "bad-request");
    let reply = client.iq(
        "get",
        None,
        "<ping xmlns='urn:xmpp:ping'/><ping xmlns='urn:xmpp:ping'/>",
    );
    assert_eq!(reply.stanza_error().1, "bad-request");
    // Invalid type.
    let reply = client.iq("fetch", None, "<ping xmlns='urn:xmpp:ping'/>");
    assert_eq!(
        reply.stanza_error(),
        ("modify".to_owned(), "bad-request".to_owned())
    );
    // No id: answered without one.
    client.send("<iq type='get'><ping xmlns='urn:xmpp:ping'/></iq>");
    let reply = client.element();
    assert_eq!(reply.attr("id"), None);
    assert_eq!(reply.stanza_error().1, "bad-request");
    // No type.
    client.send("<iq id='t'><ping xmlns='urn:xmpp:ping'/></iq>");
    assert_eq!(client.element().stanza_error().1, "bad-request");
}

#[test]
fn iq_results_and_errors_are_dropped() {
    let (mut client, _) = logged_in("203.0.113.7:40001");
    client.take_raw();
    client.send("<iq type='result' id='r1'/><iq type='error' id='r2'><error type='cancel'/></iq>");
    client.send("<presence/><presence type='unavailable'><status>bye</status></presence>");
    assert_eq!(client.take_raw(), "");
    assert!(client.no_items());
}

#[test]
fn replies_escape_what_they_echo() {
    let (mut client, _) = logged_in("203.0.113.7:40001");
    client.send("<iq type='get' id='a&apos;&lt;&amp;&quot;b'><ping xmlns='urn:xmpp:ping'/></iq>");
    let reply = client.element();
    assert_eq!(reply.attr("id"), Some("a'<&\"b"));
}

#[test]
fn bind_generates_a_resource() {
    let mut client = Client::new();
    let jid = client.login();
    let resource = jid.strip_prefix("alice@localhost/").expect("full JID");
    assert_eq!(resource.len(), 16);
    assert!(resource.bytes().all(|b| b.is_ascii_hexdigit()));
    assert_eq!(client.conn.jid(), Some(jid.as_str()));
}

#[test]
fn bind_requested_resource() {
    let mut client = Client::new();
    let jid = client.login_as("bob", Some("phone &amp; tablet"));
    assert_eq!(jid, "bob@localhost/phone & tablet");
}

#[test]
fn bind_invalid_resource_is_bad_request() {
    let too_long = "r".repeat(1024);
    for request in [
        "<resource/>".to_owned(),
        format!("<resource>{too_long}</resource>"),
    ] {
        let mut client = Client::new();
        client.open();
        client.starttls(TLS13);
        client.open();
        client
            .auth_plain("alice", crate::client::PASSWORD)
            .expect("auth");
        client.open();
        let reply = client.iq(
            "set",
            None,
            &format!("<bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'>{request}</bind>"),
        );
        assert_eq!(
            reply.stanza_error(),
            ("modify".to_owned(), "bad-request".to_owned())
        );
        // Still unbound: a valid request then works.
        assert_eq!(client.bind(Some("ok")), "alice@localhost/ok");
    }
}

#[test]
fn second_bind_is_not_allowed() {
    let mut client = Client::new();
    client.login();
    let reply = client.iq(
        "set",
        None,
        "<bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'/>",
    );
    assert_eq!(
        reply.stanza_error(),
        ("cancel".to_owned(), "not-allowed".to_owned())
    );
    assert_eq!(client.event(), None);
}

#[test]
fn legacy_session() {
    let (mut client, _) = logged_in("203.0.113.7:40001");
    let reply = client.iq(
        "set",
        Some(DOMAIN),
        "<session xmlns='urn:ietf:params:xml:ns:xmpp-session'/>",
    );
    assert_eq!(reply.attr("type"), Some("result"));
    assert!(reply.children.is_empty());
}

#[test]
fn messages_bounce() {
    let (mut client, jid) = logged_in("203.0.113.7:40001");
    client.send("<message to='bob@localhost' id='m1' type='chat'><body>hi</body></message>");
    let bounce = client.element();
    assert_eq!(bounce.name, "message");
    assert_eq!(bounce.attr("id"), Some("m1"));
    assert_eq!(bounce.attr("from"), Some("bob@localhost"));
    assert_eq!(bounce.attr("to"), Some(jid.as_str()));
    assert_eq!(
        bounce.stanza_error(),
        ("cancel".to_owned(), "service-unavailable".to_owned())
    );

    client.send("<message><body>to myself</body></message>");
    let bounce = client.element();
    assert_eq!(bounce.attr("from"), Some("alice@localhost"));
    assert_eq!(bounce.attr("id"), None);

    client.send("<message to='@@'><body>x</body></message>");
    assert_eq!(
        client.element().stanza_error(),
        ("modify".to_owned(), "jid-malformed".to_owned())
    );

    client.take_raw();
    client.send("<message to='bob@localhost' type='error'><error type='cancel'/></message>");
    assert_eq!(client.take_raw(), "", "errors are never bounced");
}

#[test]
fn bound_event_once_per_login() {
    let mut client = Client::new();
    client.login();
    assert_eq!(client.event(), None);
    let reply = client.iq("get", None, &format!("<ip xmlns='{SIC0}'/>"));
    assert_eq!(sic_answer(&reply).0, "203.0.113.7");
    assert!(!matches!(client.event(), Some(Event::Bound { .. })));
}
