//! XEP-0030 service discovery answers: the edge describes itself as a server that answers
//! SIC and ping, and answers for the requester's own account as RFC 6121 servers do.

use crate::writer::Output;

/// What the server supports, sorted (XEP-0030 lists features in no particular order;
/// sorted output is stable for tests and caches).
const SERVER_FEATURES: [&str; 5] = [
    "http://jabber.org/protocol/disco#info",
    "http://jabber.org/protocol/disco#items",
    "urn:xmpp:ping",
    "urn:xmpp:sic:0",
    "urn:xmpp:sic:1",
];

const ACCOUNT_FEATURES: [&str; 2] = [
    "http://jabber.org/protocol/disco#info",
    "http://jabber.org/protocol/disco#items",
];

/// disco#info about the server.
pub(crate) fn write_server_info(out: &mut Output) {
    out.raw("<query xmlns='http://jabber.org/protocol/disco#info'>");
    out.raw("<identity category='server' type='im' name='xmpp-edge'/>");
    write_features(out, &SERVER_FEATURES);
    out.raw("</query>");
}

/// disco#info about the requester's own account, answered by the server on its behalf.
pub(crate) fn write_account_info(out: &mut Output) {
    out.raw("<query xmlns='http://jabber.org/protocol/disco#info'>");
    out.raw("<identity category='account' type='registered'/>");
    write_features(out, &ACCOUNT_FEATURES);
    out.raw("</query>");
}

/// disco#items: the edge has no items to list.
pub(crate) fn write_items(out: &mut Output) {
    out.raw("<query xmlns='http://jabber.org/protocol/disco#items'/>");
}

fn write_features(out: &mut Output, features: &[&str]) {
    for feature in features {
        out.raw("<feature var='");
        out.raw(feature);
        out.raw("'/>");
    }
}
