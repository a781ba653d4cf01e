//! The cluster tier: see tests/README.md.

mod preflight;
mod workers;
