# The recipes a person types. `just --list` shows them.

set shell := ["bash", "-euo", "pipefail", "-c"]

# The dev profile, which the tests build too (dependencies at opt-level 2, Cargo.toml): `just up` then `just test`
# compiles every dependency once.
kthw := "cargo run --quiet -p kthw-cli --"

# Clippy's lints on the workspace while the tests compile, one build instead of two: `cargo clippy` checks every
# dependency again in check mode (about 4 of CI's minutes on 2 cores), while clippy-driver as cargo's workspace
# wrapper lints exactly the workspace's targets the tests build and compiles them too, dependencies untouched.
# CLIPPY_ARGS is how cargo-clippy hands clippy-driver its arguments (rust-clippy src/driver.rs, the args
# joined by `__CLIPPY_HACKERY__`); `-D warnings` fails the build on any rustc or clippy warning, as before.
lint_while_building := "RUSTC_WORKSPACE_WRAPPER=clippy-driver CLIPPY_ARGS=-D__CLIPPY_HACKERY__warnings__CLIPPY_HACKERY__"

# Install host packages and start libvirt (root; idempotent).
setup:
    scripts/setup-host

# Stand up a cluster as far as this host's artifacts allow (`kthw up --partial`). Extra args go to `kthw up`.
up *args:
    {{kthw}} up --partial {{args}}

# Tear a cluster down.
down name="kthw":
    {{kthw}} down {{name}}

# Remove whatever killed runs left behind (domains, networks, overlays, run directories).
gc:
    {{kthw}} gc

# Build (or reuse) the node image.
image *args:
    {{kthw}} image build {{args}}

# The example downstream crate (a user's repository in miniature: its own workspace and lock, kthw by path) is
# built in the workspace's target directory, so only kthw and the example compile again (Cargo hashes a path
# dependency's place relative to the workspace root, so kthw is a new unit there: rust-lang/cargo
# src/cargo/core/package_id.rs `stable_hash`), and its tests share the test home under it: the node image and
# the golden snapshots the vm tier saved. It runs after the workspace's tests, never beside them.
downstream := "CARGO_TARGET_DIR=\"${CARGO_TARGET_DIR:-" + justfile_directory() + "/target}\" cargo nextest run --manifest-path examples/downstream/Cargo.toml --locked"

# Format and lint checks, then every test tier this host can run (the CI profile), then the example downstream
# crate's tests (examples/downstream: what a user's repository of kthw tests runs).
test:
    cargo fmt --all --check
    cargo fmt --manifest-path examples/downstream/Cargo.toml --all --check
    {{lint_while_building}} cargo nextest run --workspace --locked --profile ci
    {{lint_while_building}} {{downstream}} --profile ci

# Every tier including the cluster tier and its ignored tests (KVM runners with the pinned artifacts), the
# example downstream crate's too.
e2e:
    cargo nextest run --workspace --locked --profile nightly --run-ignored all
    {{downstream}} --profile nightly --run-ignored all

# Unit tier only: seconds, no host prerequisites (the README's filter).
unit:
    cargo nextest run --workspace -E 'kind(lib) | binary(cli)'

# Replay the nightly's jobs here as root: its archive, then a shard with no Rust toolchain (scripts/rehearse-nightly).
rehearse filter="all()":
    scripts/rehearse-nightly '{{filter}}'

# In the dev profile `kthw up` runs in: what is measured is what users run, and nothing compiles twice.
# Benchmarks: ratios against baselines run in the same command (see bench/README.md).
bench *args:
    cargo run -p kthw-bench -- {{args}}
