"""Delivery: retries, fallbacks, circuit breakers and deployment choice."""
