"""catalog: the models each provider connection offers, what they are and cost, and which
of them are switched on.

It follows keyvault's provider events, lists every connected provider's models (using the
key it fetches from keyvault's internal route, kept only for the call) on connect, on key
rotation, on an admin's request and on a schedule, describes each from the provider's
listing and the model data file, records each model once, and tells the rest of the
gateway through model events what appeared, changed, disappeared, and what an admin (or a
connection's new-model policy) enabled or disabled. New models start disabled unless the
connection's policy says otherwise.

It also lists the install operator's connections, offers their models to workspaces as
managed models (``offers``), and keeps each workspace's aliases (``aliases``).
"""
