from services.proxy.app import create_app
from shared.serve import serve

serve("proxy", create_app, default_port=8000)
