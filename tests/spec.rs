//! Integration tests: spec.
