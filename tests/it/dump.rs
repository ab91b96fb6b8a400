//! Integration tests: dump (being written).
