# The recipes a person types. `just --list` shows them.

set shell := ["bash", "-euo", "pipefail", "-c"]

kthw := "cargo run --quiet --release -p kthw-cli --"

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
    cargo clippy --workspace --all-targets --locked -- -D warnings
    cargo nextest run --workspace --locked --profile ci

# Every tier including the cluster tier and its ignored tests (KVM runners with the pinned artifacts).
e2e:
    cargo nextest run --workspace --locked --profile nightly --run-ignored all

# Unit tier only: seconds, no host prerequisites (the README's filter).
unit:
    cargo nextest run --workspace -E 'kind(lib) | binary(cli)'

# Replay the nightly's jobs here as root: its archive, then a shard with no Rust toolchain (scripts/rehearse-nightly).
rehearse filter="all()":
    scripts/rehearse-nightly '{{filter}}'

# Benchmarks: ratios against baselines run in the same command (see bench/README.md).
bench:
    cargo run --release -p kthw-bench --
