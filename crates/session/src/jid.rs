//! Minimal JID handling: split and compare (RFC 7622 without full PRECIS).
