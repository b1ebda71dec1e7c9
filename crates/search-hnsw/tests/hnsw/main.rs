//! Integration tests of the HNSW engine, one module per topic.

mod common;
mod files;
mod hnswlib;
mod mutate;
mod oracle;
