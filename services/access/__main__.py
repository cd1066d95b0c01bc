from services.access.app import create_app
from shared.serve import serve

serve("access", create_app, 8003)
