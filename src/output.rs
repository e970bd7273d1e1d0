//! (stub) output
