//! XEP-0279 Server IP Check answers, in the three wire forms clients send. The address is
//! always [`crate::Addresses::client`], the one place the client's address comes from.

use std::net::SocketAddr;

use crate::writer::Output;

/// Which request was asked, which decides the answer's shape.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum SicForm {
    /// sic:0 `<ip/>`, answered `<ip xmlns='urn:xmpp:sic:0'>ADDR</ip>` (what slixmpp sends
    /// and parses).
    Ip0,
    /// sic:0 `<address/>`, answered `<address><ip>ADDR</ip></address>` (ejabberd's codec).
    Address0,
    /// sic:1 `<address/>`, answered with `<ip>` and `<port>`.
    Address1,
}

/// Writes the answer payload. An IPv4-mapped IPv6 address (a dual-stack socket's view of
/// an IPv4 client) is reported as the IPv4 address the client knows.
pub(crate) fn write_answer(out: &mut Output, form: SicForm, client: SocketAddr) {
    let ip = client.ip().to_canonical();
    match form {
        SicForm::Ip0 => {
            out.raw("<ip xmlns='urn:xmpp:sic:0'>");
            out.display(ip);
            out.raw("</ip>");
        }
        SicForm::Address0 => {
            out.raw("<address xmlns='urn:xmpp:sic:0'><ip>");
            out.display(ip);
            out.raw("</ip></address>");
        }
        SicForm::Address1 => {
            out.raw("<address xmlns='urn:xmpp:sic:1'><ip>");
            out.display(ip);
            out.raw("</ip><port>");
            out.number(u64::from(client.port()));
            out.raw("</port></address>");
        }
    }
}
