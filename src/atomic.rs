//! (stub) atomic
