//! The vm tier: see tests/README.md.

mod bootstrap;
mod faults;
mod images;
mod nodes;
mod ssh;
