//! SSH to nodes with russh: pinned host keys, commands with deadlines, file transfer, tunnels.
