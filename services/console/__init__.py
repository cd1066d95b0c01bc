"""The console: the admin and member web pages, served under ``/console/``.

It owns nothing. Every page reads, and every action writes, through the same public APIs
REST users call (access, keyvault, catalog, and the proxy's model list), with the
signed-in person's own gateway token. That token lives only in an encrypted, HttpOnly
session cookie; it is never rendered into a page or put in a URL.
"""
