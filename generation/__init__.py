"""Text that leaves or enters ShopBot: the safety checkpoint (the GPT-2 generator joins it here)."""
