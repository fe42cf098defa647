"""ShopBot: the customer-support assistant service (settings, engine, actions, state, channels)."""
