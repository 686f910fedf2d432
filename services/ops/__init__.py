"""Operators' tools: what a person runs against the live system (the `safetymon` command)."""
