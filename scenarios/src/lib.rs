//! The seed's scenarios: what each sets up, what it asserts, and what its failure looks like. They sit above
//! the library (`kthw`): each brings its cluster up through `kthw::up::Up` and names failures with the same
//! classifier the phases use, [`kthw::diagnosis`], so that a scenario can assert *why* something failed and
//! tell the seed's look-alike failures apart (unresolvable node names vs. cold images behind a
//! `status --wait` timeout).

pub use kthw::diagnosis;
