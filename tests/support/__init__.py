"""Helpers and test oracles shared by the test suite (and the benches): import from here."""
