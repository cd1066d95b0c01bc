"""The proxy: the one door members call models through.

It owns nothing durable. It follows the event stream into an in-memory view of who may
call which model, fetches provider keys from keyvault into memory, forwards each call
to its provider, and records usage as events. On the hot path the only network call is
the one to the provider.
"""
