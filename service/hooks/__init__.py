"""The hook types, one module each (``registration``, ``token``, ``saml``, ``user_import``,
``password_import``), the machinery they share (``base``, ``config``, ``result``) and the registry
that lists them (``registry``). See docs/architecture.md, "Adding a hook type"."""
