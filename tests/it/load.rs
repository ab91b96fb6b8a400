//! Integration tests: load (being written).
