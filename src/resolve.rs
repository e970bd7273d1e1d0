//! (stub) resolve
