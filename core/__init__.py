"""Leaves every room may import: the error table, ids and request-id rules."""
