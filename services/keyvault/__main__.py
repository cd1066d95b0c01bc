"""``python -m services.keyvault`` serves keyvault; ``python -m services.keyvault rewrap`` rewraps."""

import sys

if sys.argv[1:2] == ["rewrap"]:
    from services.keyvault.rewrap import main

    main()
else:
    from services.keyvault.app import create_app
    from shared.serve import serve

    serve("keyvault", create_app, 8001)
