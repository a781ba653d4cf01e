//! The vm tier: see tests/README.md.
