//! Integration tests of the forest engine, one module per topic.

mod common;

mod annoy_rs;
mod damaged;
mod oracle;
mod python;
mod roundtrip;
