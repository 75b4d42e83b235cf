"""Shared runtime of every service: NATS connection and embedded server, clock,
ids, config, logging, request/reply endpoints and the service lifecycle.

Services import from here, never from one another.
"""
