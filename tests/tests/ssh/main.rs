//! The ssh tier: `kthw::ssh` against a real OpenSSH server that each test starts on 127.0.0.1, with a host
//! key and an authorized client key that the harness made. Seconds in total; no VMs.

mod commands;
mod connect;
mod interactive;
mod sshd;
mod transfer;
mod tunnel;
