"""The console's page routers, one module per page; only the app factory includes them."""
