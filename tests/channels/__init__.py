"""Channel adapters, driven through their real transports."""
