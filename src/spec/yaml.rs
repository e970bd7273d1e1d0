//! (stub) yaml
