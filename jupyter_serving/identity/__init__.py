"""Identity: who calls (principals, tokens), what they may do (permissions, grants),
and the secrets endpoints read."""
