//! Tests for config.json and runtime.json.
