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

# Format and lint checks, then every test tier this host can run (the CI profile).
test:
    cargo fmt --all --check
    {{lint_while_building}} cargo nextest run --workspace --locked --profile ci

# Every tier including the cluster tier and its ignored tests (KVM runners with the pinned artifacts).
e2e:
    cargo nextest run --workspace --locked --profile nightly --run-ignored all

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
