"""okta-ldap-hook: answers Okta inline hooks with attributes from an LDAP directory."""

__version__ = "0.1.0"
