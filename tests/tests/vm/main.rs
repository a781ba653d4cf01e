//! The vm tier: see tests/README.md.

mod bootstrap;
mod cri;
mod faults;
mod golden;
mod images;
mod nodes;
mod runtimes;
mod scenario_premises;
mod ssh;
mod stalls;
mod testkit;
