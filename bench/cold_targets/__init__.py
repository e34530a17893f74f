"""Reference Lambda handlers for the cold-start comparison, written the plainest way."""
