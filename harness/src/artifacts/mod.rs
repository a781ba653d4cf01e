//! Pinned upstream artifacts: version, URL and published checksum; download, verify, cache.
