//! The cluster tier: see tests/README.md.

mod preflight;
mod ready;
mod testkit;
mod workers;
