"""A small but real RBAC authorizer for the API emulator.

Loads Role/ClusterRole and (optionally) RoleBinding/ClusterRoleBinding
objects from multi-document YAML, as ``kubectl kustomize`` renders them, and
decides requests by apiGroups/resources (incl. ``pods/status`` subresources
and ``*``)/verbs/resourceNames.

Subjects: with bindings loaded, a user gets the rules of the roles bound to
it (``User`` by name, ``ServiceAccount`` as
``system:serviceaccount:<ns>:<name>``, ``Group`` ``system:authenticated`` /
``system:serviceaccounts`` / ``system:serviceaccounts:<ns>``); a RoleBinding
grants only inside its namespace. Without any binding, every loaded rule
applies to every non-admin caller (Role rules only in the Role's namespace
when it names one).
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from sandbox.faults import RequestInfo


@dataclass(frozen=True)
class Rule:
    """One PolicyRule."""

    api_groups: tuple[str, ...]
    resources: tuple[str, ...]
    verbs: tuple[str, ...]
    resource_names: tuple[str, ...] = ()

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Rule:
        """Build from a PolicyRule mapping."""
        return cls(
            tuple(d.get("apiGroups") or ()),
            tuple(d.get("resources") or ()),
            tuple(d.get("verbs") or ()),
            tuple(d.get("resourceNames") or ()),
        )

    def allows(self, info: RequestInfo) -> bool:
        """Whether this rule grants the request."""
        if "*" not in self.api_groups and info.group not in self.api_groups:
            return False
        if "*" not in self.verbs and info.verb not in self.verbs:
            return False
        if info.subresource:
            wanted = {f"{info.resource}/{info.subresource}", f"{info.resource}/*",
                      f"*/{info.subresource}", "*"}
        else:
            wanted = {info.resource, "*"}
        if not wanted.intersection(self.resources):
            return False
        if self.resource_names:
            return info.name is not None and info.name in self.resource_names
        return True


@dataclass
class _Grant:
    rules: list[Rule]
    namespace: str | None  # None = cluster-wide


@dataclass
class Decision:
    """The outcome of an authorization check."""

    allowed: bool
    user: str
    info: RequestInfo

    def message(self) -> str:
        """The message a real API server puts in a 403 Status."""
        i = self.info
        res = f"{i.resource}/{i.subresource}" if i.subresource else i.resource
        what = f'{res} "{i.name}"' if i.name else res
        where = f' in the namespace "{i.namespace}"' if i.namespace else " at the cluster scope"
        return (
            f'{what} is forbidden: User "{self.user}" cannot {i.verb} resource "{res}" '
            f'in API group "{i.group}"{where}'
        )


class Authorizer:
    """Holds loaded RBAC objects and authorizes requests; records denials."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.roles: dict[tuple[str, str], list[Rule]] = {}  # (namespace or "", name)
        self.cluster_roles: dict[str, list[Rule]] = {}
        self.bindings: list[dict[str, Any]] = []
        self.denied: list[dict[str, Any]] = []
        self.enabled = False

    def load(self, source: str | Path, default_namespace: str = "default") -> int:
        """Load RBAC documents from YAML text or a file path; returns objects loaded.

        Non-RBAC documents are ignored. Loading enables enforcement.
        """
        if isinstance(source, Path) or ("\n" not in source and Path(source).is_file()):
            text = Path(source).read_text()
        else:
            text = source
        n = 0
        with self._lock:
            for doc in yaml.safe_load_all(text):
                if not isinstance(doc, dict):
                    continue
                items = doc.get("items") if doc.get("kind", "").endswith("List") else [doc]
                for obj in items or []:
                    n += self._load_one(obj, default_namespace)
            self.enabled = True
        return n

    def _load_one(self, obj: dict[str, Any], default_ns: str) -> int:
        kind = obj.get("kind")
        meta = obj.get("metadata") or {}
        rules = [Rule.from_dict(r) for r in obj.get("rules") or []]
        if kind == "Role":
            self.roles[(meta.get("namespace") or "", meta["name"])] = rules
        elif kind == "ClusterRole":
            self.cluster_roles[meta["name"]] = rules
        elif kind in ("RoleBinding", "ClusterRoleBinding"):
            b = dict(obj)
            if kind == "RoleBinding":
                b.setdefault("metadata", {}).setdefault("namespace", default_ns)
            self.bindings.append(b)
        else:
            return 0
        return 1

    def clear(self) -> None:
        """Forget every rule and disable enforcement."""
        with self._lock:
            self.roles.clear()
            self.cluster_roles.clear()
            self.bindings.clear()
            self.denied.clear()
            self.enabled = False

    @staticmethod
    def _subject_matches(subject: dict[str, Any], user: str, binding_ns: str | None) -> bool:
        kind = subject.get("kind")
        name = subject.get("name")
        if kind == "User":
            return name == user
        if kind == "ServiceAccount":
            ns = subject.get("namespace") or binding_ns
            return user == f"system:serviceaccount:{ns}:{name}"
        if kind == "Group":
            if name == "system:authenticated":
                return user != "system:anonymous"
            if name == "system:serviceaccounts":
                return user.startswith("system:serviceaccount:")
            if name and name.startswith("system:serviceaccounts:"):
                return user.startswith(f"system:serviceaccount:{name.split(':', 2)[2]}:")
        return False

    def _grants(self, user: str) -> list[_Grant]:
        if not self.bindings:
            grants = [_Grant(r, ns or None) for (ns, _), r in self.roles.items()]
            grants += [_Grant(r, None) for r in self.cluster_roles.values()]
            return grants
        grants = []
        for b in self.bindings:
            bns = (b.get("metadata") or {}).get("namespace") if b["kind"] == "RoleBinding" else None
            if not any(self._subject_matches(s, user, bns) for s in b.get("subjects") or []):
                continue
            ref = b.get("roleRef") or {}
            if ref.get("kind") == "ClusterRole":
                rules = self.cluster_roles.get(ref.get("name", ""), [])
            else:
                rules = self.roles.get((bns or "", ref.get("name", "")), [])
            grants.append(_Grant(rules, bns))
        return grants

    def authorize(self, user: str, info: RequestInfo) -> Decision:
        """Decide one request; denied requests are appended to :attr:`denied`."""
        with self._lock:
            if not self.enabled:
                return Decision(True, user, info)
            allowed = any(
                (g.namespace is None or g.namespace == info.namespace)
                and any(r.allows(info) for r in g.rules)
                for g in self._grants(user)
            )
            d = Decision(allowed, user, info)
            if not allowed:
                self.denied.append(
                    {"user": user, "verb": info.verb, "group": info.group,
                     "resource": info.resource, "subresource": info.subresource,
                     "namespace": info.namespace, "name": info.name, "path": info.path}
                )
            return d
