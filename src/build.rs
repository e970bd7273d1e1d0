//! (stub) build
