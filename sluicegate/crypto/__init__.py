"""Encryption of secrets at rest (envelope encryption under master keys)."""
