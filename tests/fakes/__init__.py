"""Fakes the tests talk to over real connections."""
