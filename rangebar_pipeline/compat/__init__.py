"""Adapters for rangebar 7.1.3's names over the core (above every core module, never imported by it)."""
