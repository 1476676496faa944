"""Embedded demo: a throwaway OpenLDAP server (slapd) and its data, for `make run` and the tests."""
