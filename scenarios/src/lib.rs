//! The seed's scenarios: what each sets up, what it asserts, and what its failure looks like.
//!
//! The scenarios themselves need a running cluster (the cluster tier). What lives here already is the part
//! every one of them shares: reading the text a failing cluster prints (`cilium status`, `kubectl` errors,
//! kubelet events) and naming the cause, so that a scenario can assert *why* something failed, and tell the
//! seed's look-alike failures apart (unresolvable node names vs. cold images behind a `status --wait` timeout).

pub mod diagnosis;
