from services.console.app import create_app
from shared.serve import serve

serve("console", create_app, 8004)
