from services.keyvault.app import create_app
from shared.serve import serve

serve("keyvault", create_app, 8001)
