"""Adapters: one per technology, each implementing domain ports. They never import each other."""
