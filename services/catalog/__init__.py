"""catalog: the models each provider connection offers, and which of them are switched on.

It follows keyvault's provider events, lists every connected provider's models (using the
key it fetches from keyvault's internal route, kept only for the call), records each model
once, and tells the rest of the gateway through model events what appeared, changed,
disappeared, and what an admin enabled or disabled. New models start disabled.
"""
