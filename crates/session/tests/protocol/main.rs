//! In-memory protocol tests: a test client drives a `session::Connection` through every
//! path, parsing the server's output with the stanza tokenizer.

mod client;
mod conditions;
mod counts;
mod limits;
mod sasl;
mod stanzas;
mod stream;
