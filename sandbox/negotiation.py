"""Content negotiation of answers, as the Kubernetes API server does it.

A client names the form it wants in the ``Accept`` header: a list of media
ranges separated by commas, each with parameters; ``as``/``g``/``v`` ask for
the answer converted to a kind of ``meta.k8s.io`` (v1 or v1beta1):

* ``application/json;as=PartialObjectMetadataList;g=meta.k8s.io;v=v1`` -- a
  list of the objects' ``metadata`` only;
* ``application/json;as=PartialObjectMetadata;g=meta.k8s.io;v=v1`` -- one
  object's (or each watch event's) ``metadata`` only;
* ``application/json;as=Table;g=meta.k8s.io;v=v1`` -- what ``kubectl get``
  prints.

The server takes the clauses in quality order and answers with the first one it
can serve; a clause asking for a conversion it does not know is skipped, so a
trailing plain ``application/json`` is the fallback. When no clause fits, the
answer is 406 NotAcceptable. The emulator serves JSON only (no protobuf, YAML or
CBOR), so ``application/vnd.kubernetes.protobuf`` alone gets that 406.

Like the real server (``k8s.io/apiserver`` ``negotiation`` and ``handlers``),
negotiation does not check that the kind fits the request: asking for
``PartialObjectMetadataList`` on a get (or ``PartialObjectMetadata`` on a list)
passes negotiation and fails with 406 only when the answer is converted
(:func:`mismatch`), after the request was carried out.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

from sandbox.cluster import ClusterError

__all__ = [
    "AS_STORED",
    "SERVED_MEDIA_TYPES",
    "Representation",
    "mismatch",
    "negotiate",
    "not_acceptable",
]

META_GROUP = "meta.k8s.io"
META_VERSIONS = frozenset({"v1", "v1beta1"})
CONVERSIONS = frozenset({"Table", "PartialObjectMetadata", "PartialObjectMetadataList"})
SERVED_MEDIA_TYPES = ("application/json",)


@dataclass(frozen=True, slots=True)
class Representation:
    """The form of an answer: the stored object (``kind=""``) or a ``meta.k8s.io`` kind.

    Attributes:
        kind: ``""``, ``"Table"``, ``"PartialObjectMetadata"`` or ``"PartialObjectMetadataList"``.
        version: the ``meta.k8s.io`` version asked for (``v1`` or ``v1beta1``).
    """

    kind: str = ""
    version: str = "v1"

    @property
    def api_version(self) -> str:
        """``apiVersion`` of the converted answer, e.g. ``meta.k8s.io/v1``."""
        return f"{META_GROUP}/{self.version}"

    @property
    def metadata_only(self) -> bool:
        """Whether the answer carries each object's ``metadata`` only."""
        return self.kind in ("PartialObjectMetadata", "PartialObjectMetadataList")

    @property
    def view(self) -> str:
        """A short name for traffic counts: ``full``, ``metadata`` or ``table``."""
        if self.metadata_only:
            return "metadata"
        return "table" if self.kind == "Table" else "full"


AS_STORED = Representation()


@dataclass(frozen=True, slots=True)
class _Clause:
    type: str
    subtype: str
    params: dict[str, str]
    q: float


def _parse_accept(header: str) -> list[_Clause]:
    """The clauses of an Accept header, best first (quality, then specificity)."""
    clauses: list[_Clause] = []
    for part in header.split(","):
        media_range, *raw_params = part.strip().split(";")
        type_, sep, subtype = media_range.strip().partition("/")
        if not sep:
            if type_ != "*":
                continue  # not a media range: ignored, as Kubernetes' parser does
            subtype = "*"
        params: dict[str, str] = {}
        q = 1.0
        for raw in raw_params:
            key, eq, value = raw.partition("=")
            if not eq:
                continue
            key, value = key.strip(), value.strip()
            if key == "q":
                try:
                    q = float(value)
                except ValueError:
                    q = 0.0
            else:
                params[key] = value
        clauses.append(_Clause(type_.strip(), subtype.strip(), params, q))
    # stable: among equals, the client's order decides
    clauses.sort(key=lambda c: (-c.q, c.type == "*", c.subtype == "*"))
    return clauses


def _representation(clause: _Clause, media_type: str) -> Representation | None:
    """What ``clause`` asks for from ``media_type``, or None if it cannot be served."""
    if clause.q <= 0:
        return None  # q=0: the client refuses this media range
    served_type, _, served_subtype = media_type.partition("/")
    exact_type = clause.type == served_type and clause.subtype in ("*", served_subtype)
    if not exact_type and (clause.type, clause.subtype) != ("*", "*"):
        return None  # "*/json" matches nothing, as in Kubernetes' negotiation
    params = clause.params
    if params.get("stream") not in (None, "", "watch"):
        return None
    if not {"as", "g", "v"} & params.keys():
        return AS_STORED
    kind, group, version = params.get("as", ""), params.get("g", ""), params.get("v", "")
    if group != META_GROUP or version not in META_VERSIONS or kind not in CONVERSIONS:
        return None
    return Representation(kind, version)


@functools.lru_cache(maxsize=512)  # clients send the same few headers on every request
def negotiate(accept: str | None) -> Representation | None:
    """The representation an ``Accept`` header asks for; None when nothing offered can be served.

    An empty or missing header means the stored object as JSON.
    """
    if not accept or not accept.strip():
        return AS_STORED
    for clause in _parse_accept(accept):
        for media_type in SERVED_MEDIA_TYPES:
            found = _representation(clause, media_type)
            if found is not None:
                return found
    return None


def not_acceptable() -> ClusterError:
    """The 406 for an Accept header offering nothing the emulator serves."""
    return ClusterError(
        406,
        "NotAcceptable",
        "only the following media types are accepted: " + ", ".join(SERVED_MEDIA_TYPES),
    )


def go_type(group: str, kind: str, is_list: bool) -> str:
    """The Go type the real server names in its 406 messages, e.g. ``*core.PodList``."""
    if group == "argoproj.io":  # custom resources are served as unstructured objects
        return "*unstructured.UnstructuredList" if is_list else "*unstructured.Unstructured"
    package = group.split(".")[0] if group else "core"
    return f"*{package}.{kind}{'List' if is_list else ''}"


def mismatch(representation: Representation, group: str, kind: str, is_list: bool) -> ClusterError | None:
    """The 406 for a conversion that does not fit the answer (a list as one object, or back)."""
    if representation.kind == "PartialObjectMetadata" and is_list:
        what = "you requested PartialObjectMetadata, but the requested object is a list"
    elif representation.kind == "PartialObjectMetadataList" and not is_list:
        what = "you requested PartialObjectMetadataList, but the requested object is not a list"
    else:
        return None
    return ClusterError(406, "NotAcceptable", f"{what} ({go_type(group, kind, is_list)})")
