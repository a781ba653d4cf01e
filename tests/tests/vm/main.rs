//! The vm tier: see tests/README.md.

mod nodes;
