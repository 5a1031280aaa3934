//! The xmpp-edge server: tokio listeners and TLS around the sans-IO session core.
#![forbid(unsafe_code)]
