from services.catalog.app import create_app
from shared.serve import serve

serve("catalog", create_app, 8002)
