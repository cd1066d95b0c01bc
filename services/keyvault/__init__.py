"""keyvault: custody of the provider keys that workspaces bring.

An admin pastes a provider key once. keyvault checks it with the provider, keeps it
envelope-encrypted, shows only a masked form and a keyed fingerprint from then on, and
hands the plain key to other gateway services alone, over one internal route that takes
a service credential, counting who read which key and how often. Disconnecting destroys
the wrapped data key, so the stored ciphertext can never be read again. A rewrap
(``python -m services.keyvault rewrap``) moves every secret to the keyring's newest entry
while keyvault serves.
"""
