//! The vm tier: see tests/README.md.

mod bootstrap;
mod nodes;
mod ssh;
