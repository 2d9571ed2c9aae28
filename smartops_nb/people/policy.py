"""The team's policy file (YAML, ``parameters/policy.yaml`` or ``--policy FILE`` / ``$SMARTOPS_POLICY``).

```yaml
roles:                          # who holds which role; the highest that matches wins
  admin:     {users: [carol]}
  approver:  {groups: [sre]}
  responder: {groups: [dev]}
  viewer:    {groups: ["*"]}    # "*": every signed-in person
approvals:                      # who may approve what; the first rule matching action/environment/severity wins
  - action: rollback
    environment: [production]
    role: approver
    groups: [sre]
  - action: [restart-database, prune-docker-volumes, flush-cache]
    two_person: true            # the plan runs after two different people approve it
```

Without a rule an approval needs the ``approver`` role. A file that does not parse or does not
validate is a :class:`~smartops_nb.contract.ParameterError` naming its line (``serve`` exits 2 at start).
No file at all: no policy (:data:`NONE`): whoever holds a credential acts as admin.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from smartops_nb.contract import ParameterError

from .identity import PERMISSIONS, ROLES, Forbidden, Identity, rank

POLICY_ENV = "SMARTOPS_POLICY"
DEFAULT_PATH = "parameters/policy.yaml"
_RULE_KEYS = {"action", "environment", "severity", "role", "groups", "users", "two_person"}


@dataclass(frozen=True)
class Rule:
    actions: frozenset[str]
    environments: frozenset[str] = frozenset()   # empty: any
    severities: frozenset[str] = frozenset()
    role: str = "approver"
    groups: frozenset[str] = frozenset()          # empty: any group
    users: frozenset[str] = frozenset()
    two_person: bool = False

    def matches(self, action: str, environment: str, severity: str) -> bool:
        return (("*" in self.actions or action in self.actions)
                and (not self.environments or environment in self.environments)
                and (not self.severities or severity in self.severities))


@dataclass(frozen=True)
class Policy:
    source: str = ""
    roles: dict[str, tuple[frozenset[str], frozenset[str]]] = field(default_factory=dict)  # role -> (users, groups)
    rules: tuple[Rule, ...] = ()

    @property
    def configured(self) -> bool:
        return bool(self.source)

    def role_of(self, who: Identity) -> str:
        """The role a person holds: the highest of the credential's own and the policy's mapping.
        Without a policy file, everyone authenticated is admin (the single-user default)."""
        if not self.configured:
            return "admin" if rank(who.role) >= 0 or who.how == "local" else who.role
        best = who.role if who.how == "token" else "viewer" if who.how in ("oidc", "proxy") else ""
        for role, (users, groups) in self.roles.items():
            if (who.name in users or who.subject in users or "*" in groups or set(who.groups) & groups) \
                    and rank(role) > rank(best):
                best = role
        return best

    def resolve(self, who: Identity) -> Identity:
        """``who`` with the role this policy gives it."""
        from dataclasses import replace

        return replace(who, role=self.role_of(who))

    def rule(self, action: str, environment: str, severity: str) -> Rule:
        return next((r for r in self.rules if r.matches(action, environment, severity)),
                    Rule(actions=frozenset({"*"})))

    def require(self, who: Identity, permission: str) -> Identity:
        """``who`` resolved; :class:`Forbidden` naming the permission when its role lacks it."""
        who = self.resolve(who)
        who.require(permission)
        return who

    def may_approve(self, who: Identity, action: str, environment: str, severity: str) -> Rule:
        """The rule that lets ``who`` approve; :class:`Forbidden` saying what is missing."""
        who = self.require(who, "approve") if self.configured else who
        r = self.rule(action, environment, severity)
        where = f"{action} in {environment or 'any environment'} at {severity or 'any severity'}"
        if self.configured and rank(who.role) < rank(r.role):
            raise Forbidden(f"{who.name} ({who.role}) lacks the permission 'approve' for {where} "
                            f"(needs role {r.role})")
        if self.configured and (r.groups or r.users) and not (set(who.groups) & r.groups or who.name in r.users
                                                              or who.subject in r.users):
            need = ", ".join([f"group {g}" for g in sorted(r.groups)] + [f"user {u}" for u in sorted(r.users)])
            raise Forbidden(f"{who.name} lacks the permission 'approve' for {where} (needs {need})")
        return r


NONE = Policy()


def path_of(given: str | os.PathLike | None = None) -> Path | None:
    """The policy file in force: ``given``, else ``$SMARTOPS_POLICY``, else ``parameters/policy.yaml`` if present."""
    if given:
        return Path(given)
    if os.environ.get(POLICY_ENV):
        return Path(os.environ[POLICY_ENV])
    default = Path(DEFAULT_PATH)
    return default if default.is_file() else None


def load(given: str | os.PathLike | None = None) -> Policy:
    """The policy in force (:data:`NONE` when there is no file); ParameterError naming the line if bad."""
    path = path_of(given)
    if path is None:
        return NONE
    try:
        text = path.read_text()
    except OSError as e:
        raise ParameterError(f"policy file {path}: {e.strerror or e}") from None
    return parse(text, str(path))


def parse(text: str, source: str = "policy") -> Policy:
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
        data = yaml.safe_load(text)
    except yaml.MarkedYAMLError as e:
        line = e.problem_mark.line + 1 if e.problem_mark else "?"
        raise ParameterError(f"{source}, line {line}: not YAML: {e.problem}") from None
    except yaml.YAMLError as e:
        raise ParameterError(f"{source}: not YAML: {e}") from None

    def bad(at: Any, why: str) -> ParameterError:
        return ParameterError(f"{source}, line {at.start_mark.line + 1}: {why}")

    if node is None:
        return Policy(source=source)
    if not isinstance(data, dict):
        raise bad(node, "a policy is a mapping with 'roles' and 'approvals'")
    keys = {k.value: v for k, v in node.value}
    for k in keys.keys() - {"roles", "approvals"}:
        raise bad(next(kn for kn, _ in node.value if kn.value == k), f"unknown key {k!r} (roles, approvals)")
    roles: dict[str, tuple[frozenset[str], frozenset[str]]] = {}
    for (kn, vn), (role, who) in zip(getattr(keys.get("roles"), "value", []), (data.get("roles") or {}).items()):
        if role not in ROLES:
            raise bad(kn, f"unknown role {role!r} ({', '.join(ROLES)})")
        if not isinstance(who, dict) or set(who) - {"users", "groups"}:
            raise bad(vn, f"role {role}: give {{users: [...], groups: [...]}}")
        roles[role] = (_names(who.get("users"), bad, vn), _names(who.get("groups"), bad, vn))
    rules = []
    rule_nodes = getattr(keys.get("approvals"), "value", [])
    raw_rules = data.get("approvals") or []
    if not isinstance(raw_rules, list):
        raise bad(keys["approvals"], "approvals is a list of rules")
    for rn, r in zip(rule_nodes, raw_rules):
        if not isinstance(r, dict) or "action" not in r or set(r) - _RULE_KEYS:
            raise bad(rn, f"a rule needs 'action' and only these keys: {', '.join(sorted(_RULE_KEYS))}")
        role = r.get("role", "approver")
        if role not in ROLES:
            raise bad(rn, f"unknown role {role!r} ({', '.join(ROLES)})")
        if not isinstance(r.get("two_person", False), bool):
            raise bad(rn, "two_person is true or false")
        rules.append(Rule(actions=_names(r["action"], bad, rn), environments=_names(r.get("environment"), bad, rn),
                          severities=_names(r.get("severity"), bad, rn), role=role,
                          groups=_names(r.get("groups"), bad, rn), users=_names(r.get("users"), bad, rn),
                          two_person=r.get("two_person", False)))
    return Policy(source=source, roles=roles, rules=tuple(rules))


def _names(value: Any, bad, at) -> frozenset[str]:
    """A name or a list of names (None: none)."""
    if value is None:
        return frozenset()
    values = [value] if isinstance(value, str) else value
    if not isinstance(values, list) or not all(isinstance(v, (str, int)) for v in values):
        raise bad(at, f"expected a name or a list of names, got {value!r}")
    return frozenset(str(v) for v in values)


__all__ = ["Policy", "Rule", "NONE", "load", "parse", "path_of", "Forbidden", "PERMISSIONS"]
