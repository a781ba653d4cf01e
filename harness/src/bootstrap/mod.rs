//! One phase per seed step, each idempotent, timed and logged per node.
