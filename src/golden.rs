//! (stub) golden
