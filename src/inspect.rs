//! (stub) inspect
