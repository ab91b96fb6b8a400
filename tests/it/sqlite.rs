//! Integration tests: sqlite (being written).
