"""Generators of test material that ships with the package (the attack corpus); nothing here runs in normal use."""
