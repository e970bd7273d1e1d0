//! Tests for the tree layout.
