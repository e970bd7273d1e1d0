//! (stub) assemble
