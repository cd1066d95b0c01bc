"""access: the gateway's root of authority.

It owns workspaces, their members and roles, groups, gateway tokens and the rules that
say who may use which model. Admins manage all of it over ``/access/v1``; other
services ask who a token belongs to over the one internal route,
``POST /access/internal/v1/introspect``. It learns which models exist from catalog's
events, so a rule can only name a model the workspace really has.
"""
