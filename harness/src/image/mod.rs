//! Node images: build from the recipe in images/debian, cache by content, list and prune.
