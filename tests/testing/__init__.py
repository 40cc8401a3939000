"""Tests of the contract kit (virtabs.testing) itself."""
