//! (stub) unpack
