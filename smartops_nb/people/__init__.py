"""Who acts: authenticated identities, their roles, the team's policy file and personal tokens.

- :mod:`.identity`: an :class:`~.identity.Identity` (subject, issuer, display name, how it was
  proven: oidc / token / proxy / local) and the role ladder viewer < responder < approver < admin,
  plus the ``alertmanager`` identity that may only post alerts.
- :mod:`.policy`: the YAML policy file (``parameters/policy.yaml``): roles of users and groups, who may
  approve which action at which severity and environment, and the two-person rule.
- :mod:`.tokens`: personal tokens, kept only as SHA-256 hashes in the archive's index.
"""
