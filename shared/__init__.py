"""Code that every service of the gateway shares.

Event schemas, the event store and relay, provider adapters, settings, logging and
service-to-service credentials live here once. Nothing in this package imports a
service; services import from it.
"""
