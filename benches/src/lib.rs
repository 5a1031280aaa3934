//! Shared corpora generators for the benches.
