"""`--from-file`: a saved dump read as a stream, handed to the pass in chunks of whole workflows.

A dump (`kubectl get pods,workflows,workflowtaskresults -A -o json`) can be larger than the
memory a command may take: a 50,000-pod dump is ~1.7 GB of JSON and several GB as Python
objects. So nothing holds it whole:

1. **Read** (`read_dump`): the top-level object is walked by hand and each element of its
   `items` array is parsed alone, by the standard library's C parser
   (`JSONDecoder.raw_decode`) over a window of the file that grows only to hold the
   current item. Why not a streaming parser such as ijson: its C backend (yajl) refuses the
   `\\udXXX` escapes of lone surrogates with a UnicodeDecodeError for the whole file, so one
   hostile pod name would make the dump unreadable instead of that pod an error
   (docs/values.md); and per item, `raw_decode` is faster. Python's parser recurses once per
   nesting level: an item nested too deep for it is skipped by a scanner that counts
   brackets without recursion (`_value_end`) and reported as that item's error.
2. **Spill**: a dump is not sorted by workflow (kubectl prints every pod, then every
   Workflow, then every WorkflowTaskResult; a dump joined from two is in any order), and a
   step's outputs may be in a Workflow or WorkflowTaskResult far behind its pod. So each pod,
   cut down to what the pass reads (`slim_pod`), each Workflow and each WorkflowTaskResult
   is written to a temporary SQLite file, keyed by namespace and workflow (its uid: see
   `_group`; by node id for the results). One pass over the file, then indexed reads; a
   second pass over the file would parse it twice. The objects are pickled, not JSON: both
   ways ~3x faster, and the file is this process's own (a private temporary directory,
   removed at the end).
3. **Chunks** (`DumpSource.chunks`): workflow by workflow (namespace, uid order), its pods,
   their WorkflowTaskResults, its Workflow's Pod nodes and the steps whose pod is not in the
   dump, in chunks of about `chunk_pods` pods of whole workflows, each parsed only when it is
   reconciled. Memory: one item while reading; one chunk while reconciling.

Everything about the dump as a whole (not UTF-8, not JSON, truncated, not a List, `items`
not an array, an item over MAX_ITEM_CHARS) is a ScopeError: one `error:` line and exit 2,
before anything is written. A problem with one item is that item's error in the report.
"""

from __future__ import annotations

import codecs
import json
import pickle
import re
import shutil
import sqlite3
import tempfile
from collections.abc import Iterator
from pathlib import Path
from types import TracebackType
from typing import Any, BinaryIO

from controller.reconcile_pass import Chunk
from controller.report import PodProblem
from controller.slimming import slim_pod
from controller.sources import PassInputs, Scope, ScopeError, _add_workflow, pod_node_id
from reconcile import conventions as c
from reconcile.argo import JSON
from reconcile.errors import Reason
from reconcile.options import ReconcileOptions

BLOCK_CHARS = 1 << 20  # read the file a MiB at a time
MAX_ITEM_CHARS = 64 << 20  # an object etcd would store is < 1.5 MB; anything far beyond is not one
NOT_A_STRING = "<kind not a string>"
_WHITESPACE = re.compile(r"[ \t\n\r]*")
# A JSON string (possibly cut off by the end of the text), or one bracket.
_TOKEN = re.compile(r'"[^"\\]*(?:\\.[^"\\]*)*(?:"|\\?\Z)|[\[\]{}]', re.S)
_SPILL_ROWS = 500


class _TooDeep:
    """An item Python's parser cannot read: nested deeper than its recursion allows."""


TOO_DEEP = _TooDeep()


def _value_end(text: str, start: int) -> int | None:
    """Where the JSON array or object starting at `start` ends, without recursion; None: not in `text`."""
    depth = 0
    for match in _TOKEN.finditer(text, start):
        token = match.group()
        if token[0] == '"':
            if match.end() == len(text) and (len(token) < 2 or not token.endswith('"') or token[-2] == "\\"):
                return None  # a string the text cuts off
            continue
        depth += 1 if token in "[{" else -1
        if depth == 0:
            return match.end()
    return None


class DumpReader:
    """The elements of a JSON document's top-level `items` array, parsed one at a time.

    Holds the current item's text and what is read ahead of it (a MiB), never the file.
    Anything wrong with the document as a whole raises ScopeError.
    """

    def __init__(self, handle: BinaryIO, name: str, block_chars: int = BLOCK_CHARS) -> None:
        self.handle = handle
        self.block_chars = block_chars
        self.name = name
        self.decoder = codecs.getincrementaldecoder("utf-8-sig")()
        self.parser = json.JSONDecoder()
        self.text = ""
        self.pos = 0
        self.consumed = 0  # characters dropped from the front of `text`
        self.eof = False
        self.item = -1  # index of the item being read

    # --- the window over the file ---

    def _fill(self, at_least: int = BLOCK_CHARS) -> bool:
        """Read more of the file (at least `at_least` characters); False at its end."""
        if self.eof:
            return False
        self.consumed += self.pos
        self.text, self.pos = self.text[self.pos :], 0
        wanted = max(at_least, self.block_chars)
        parts = [self.text]
        got = 0
        while got < wanted:
            block = self.handle.read(wanted)
            try:
                decoded = self.decoder.decode(block, final=not block)
            except UnicodeDecodeError as exc:
                raise ScopeError(f"{self.name} is not UTF-8 text ({exc.reason})") from None
            parts.append(decoded)
            got += len(decoded)
            if not block:
                self.eof = True
                break
        self.text = "".join(parts)
        return True

    def _peek(self) -> str:
        """The next character that is not whitespace ('' at the end of the file), not consumed."""
        while True:
            self.pos = _WHITESPACE.match(self.text, self.pos).end()  # type: ignore[union-attr]
            if self.pos < len(self.text):
                return self.text[self.pos]
            if not self._fill():
                return ""

    def _expect(self, chars: str, what: str) -> str:
        found = self._peek()
        if found == "":
            raise self._truncated()
        if found not in chars:
            raise self._invalid(f"expected {what}, found {found!r}", self.pos)
        self.pos += 1
        return found

    def _where(self, pos: int) -> str:
        return f"character {self.consumed + pos}" + (f", in item {self.item}" if self.item >= 0 else "")

    def _invalid(self, problem: str, pos: int) -> ScopeError:
        return ScopeError(f"{self.name} is not JSON: {problem} at {self._where(pos)}")

    def _truncated(self) -> ScopeError:
        inside = f"inside item {self.item}" if self.item >= 0 else "before the document does"
        return ScopeError(f"{self.name} is not JSON: the file ends {inside} (truncated?)")

    def _value(self) -> Any:
        """The JSON value at the current position (TOO_DEEP if Python's parser cannot nest that far)."""
        if self._peek() == "":
            raise self._truncated()
        while True:
            try:
                value, end = self.parser.raw_decode(self.text, self.pos)
            except RecursionError:
                end = _value_end(self.text, self.pos)
                if end is None:
                    self._more()
                    continue
                self.pos = end
                return TOO_DEEP
            except json.JSONDecodeError as exc:
                if len(self.text) - self.pos > MAX_ITEM_CHARS:
                    raise self._invalid(exc.msg, exc.pos) from None
                if not self._fill(len(self.text) - self.pos):  # the value may go on past the window
                    if exc.pos >= len(self.text) or exc.msg.startswith("Unterminated"):
                        raise self._truncated() from None
                    raise self._invalid(exc.msg, exc.pos) from None
                continue
            if end == len(self.text) and not self.eof:
                self._more()  # a number the window cuts off ("12" of "123"): read on and parse again
                continue
            self.pos = end
            return value

    def _more(self) -> None:
        if len(self.text) - self.pos > MAX_ITEM_CHARS:
            raise ScopeError(f"{self.name}: item {self.item} is larger than {MAX_ITEM_CHARS} characters")
        if not self._fill(len(self.text) - self.pos):
            raise self._truncated()

    # --- the document ---

    def items(self) -> Iterator[Any]:
        """Each element of `items`, in file order; then checks the rest of the document."""
        first = self._peek()
        if first == "":
            raise ScopeError(f"{self.name} is not JSON: the file is empty")
        if first != "{":
            raise ScopeError(f"{self.name} is not a Kubernetes List (the top level is not an object)")
        self.pos += 1
        seen_items = False
        if self._peek() == "}":
            self.pos += 1
        else:
            while True:
                if self._peek() != '"':
                    self._expect('"', "a key")
                key = self._value()
                self._expect(":", "':'")
                if key == "items" and not seen_items:
                    if self._peek() != "[":
                        raise ScopeError(f"{self.name} is not a Kubernetes List ('items' is not an array)")
                    self.pos += 1
                    yield from self._elements()
                    seen_items = True
                else:
                    self._value()  # apiVersion, kind, metadata: small, and not needed
                if self._expect(",}", "',' or '}'") == "}":
                    break
        if self._peek() != "":
            raise self._invalid("extra data after the document", self.pos)
        if not seen_items:
            raise ScopeError(f"{self.name} is not a Kubernetes List (no 'items' array)")

    def _elements(self) -> Iterator[Any]:
        if self._peek() == "]":
            self.pos += 1
            return
        while True:
            self.item += 1
            if self._peek() == "":
                raise self._truncated()
            yield self._value()
            if self._expect(",]", "',' or ']' after an item") == "]":
                self.item = -1
                return


# --- spill and chunks ------------------------------------------------------------


def _pickled(value: Any) -> bytes:
    """`value` for the spill; RecursionError if nested deeper than pickle can go."""
    return pickle.dumps(value, protocol=pickle.HIGHEST_PROTOCOL)


def _key(value: Any) -> str | None:
    """A name as a SQLite key: JSON text, so that lone surrogates survive; None if not a string."""
    return json.dumps(value) if isinstance(value, str) else None


def _group(uid: Any, name: Any) -> str | None:
    """The spill's workflow key: the Workflow's uid where known, else its name; None: neither.

    By uid, because step keys are (the pass links an input to its producer's output by the
    owner Workflow's uid): a pod whose workflow label disagrees with its owner still goes
    with its workflow's other steps, and links in the same pass (reconcile/plan.py).
    """
    if isinstance(uid, str):
        return "u" + json.dumps(uid)
    return "n" + json.dumps(name) if isinstance(name, str) else None


def _owner_uid(meta: dict[str, Any]) -> Any:
    refs = meta.get("ownerReferences")
    for ref in refs if isinstance(refs, list) else []:
        if isinstance(ref, dict) and ref.get("kind") == "Workflow":
            return ref.get("uid")
    return None


def _meta(obj: JSON) -> dict[str, Any]:
    meta = obj.get("metadata")
    return meta if isinstance(meta, dict) else {}


def _workflow_label(meta: dict[str, Any]) -> Any:
    labels = meta.get("labels")
    return labels.get(c.ARGO_WORKFLOW_LABEL) if isinstance(labels, dict) else None


def _name_of(meta: dict[str, Any], index: int) -> tuple[str, str]:
    """(namespace, name) to name an item in a report, whatever the item holds."""
    namespace, name = meta.get("namespace", "default"), meta.get("name")
    return (
        namespace if isinstance(namespace, str) else "?",
        name if isinstance(name, str) else f"item {index}",
    )


_SCHEMA = """
    CREATE TABLE pods (ns TEXT, wf TEXT, seq INTEGER, body BLOB);
    CREATE TABLE workflows (ns TEXT, name TEXT, seq INTEGER, body BLOB);
    CREATE TABLE results (ns TEXT, name TEXT, body BLOB);
"""
_INDEXES = """
    CREATE INDEX pods_by_workflow ON pods (ns, wf, seq);
    CREATE INDEX workflows_by_name ON workflows (ns, name, seq);
    CREATE INDEX results_by_step ON results (ns, name);
"""


class DumpSource:
    """A dump's pods, Workflows and WorkflowTaskResults in scope, spilled; `chunks()` hands them on.

    `read` gathers what is not a chunk: the Workflows' problems and uids (complete once
    read), the items that are not readable (`bad_items`) and the items of other kinds
    (`ignored_items`, by kind). Use as a context manager: the spill file is removed on exit.
    """

    def __init__(self, chunk_pods: int, options: ReconcileOptions) -> None:
        self.chunk_pods = chunk_pods
        self.options = options
        self.read = PassInputs(pods=[], taskresults={}, nodes={}, podless_steps=[])
        self.present: set[tuple[str, str]] = set()  # (namespace, node id) of every pod read
        self._dir = tempfile.mkdtemp(prefix="kfpmr-dump-")
        self.db = sqlite3.connect(Path(self._dir) / "spill.sqlite")
        # A scratch file, rebuilt if anything goes wrong: no journal, no syncs.
        self.db.executescript("PRAGMA journal_mode = OFF; PRAGMA synchronous = OFF;" + _SCHEMA)
        self._rows: dict[str, list[tuple[Any, ...]]] = {"pods": [], "workflows": [], "results": []}
        self.pods_total: int | None = None  # pods in scope, once read (the progress bar's total)

    def __enter__(self) -> DumpSource:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def close(self) -> None:
        """Remove the spill file."""
        self.db.close()
        shutil.rmtree(self._dir, ignore_errors=True)

    # --- reading ---

    def _bad(self, meta: dict[str, Any], index: int, reason: str, message: str) -> None:
        namespace, name = _name_of(meta, index)
        self.read.bad_items.append(PodProblem(namespace, name, reason, message))

    def _spill(self, table: str, row: tuple[Any, ...]) -> None:
        rows = self._rows[table]
        rows.append(row)
        if len(rows) >= _SPILL_ROWS:
            self._flush(table)

    def _flush(self, table: str) -> None:
        rows, self._rows[table] = self._rows[table], []
        if rows:
            marks = ",".join("?" * len(rows[0]))
            self.db.executemany(f"INSERT INTO {table} VALUES ({marks})", rows)

    def add(self, index: int, item: Any, scope: Scope) -> None:
        """One item of the dump: spilled if in scope, counted if of another kind, reported if unreadable."""
        if item is TOO_DEEP:
            self.read.bad_items.append(
                PodProblem("?", f"item {index}", Reason.MALFORMED_POD, "nested too deep to be read; not read")
            )
            return
        if not isinstance(item, dict):
            self.read.bad_items.append(
                PodProblem("?", f"item {index}", Reason.MALFORMED_POD, "item is not a JSON object")
            )
            return
        kind, meta = item.get("kind"), _meta(item)
        namespace = meta.get("namespace", "default")
        if kind is None or kind == "Pod":  # items without a kind are taken as pods
            if not scope.holds(namespace, _workflow_label(meta)):
                return
            slim = slim_pod(item)
            try:
                body = _pickled(slim)
            except RecursionError:
                self._bad(meta, index, Reason.MALFORMED_POD, "pod is nested too deep to be read")
                return
            key = pod_node_id(slim)
            if key is not None:
                self.present.add(key)
            group = _group(_owner_uid(meta), _workflow_label(meta))
            self._spill("pods", (_key(namespace), group, index, body))
        elif kind == "Workflow":
            name = meta.get("name")
            if not scope.holds(namespace, name):
                return
            if not isinstance(name, str) or not isinstance(namespace, str):
                self._bad(meta, index, "malformed_workflow", "metadata.name or namespace is not a string")
                return
            if isinstance(meta.get("uid"), str):
                self.read.workflow_uids.add(meta["uid"])
            try:
                body = _pickled(item)
            except RecursionError:
                self._bad(meta, index, "malformed_workflow", "Workflow is nested too deep to be read")
                return
            self._spill("workflows", (_key(namespace), _group(meta.get("uid"), name), index, body))
        elif kind == "WorkflowTaskResult":
            if not scope.holds(namespace, _workflow_label(meta)):
                return
            try:
                body = _pickled(item)
            except RecursionError:
                self._bad(
                    meta, index, Reason.MALFORMED_POD, "WorkflowTaskResult is nested too deep to be read"
                )
                return
            self._spill("results", (_key(namespace), _key(meta.get("name", "")), body))
        elif isinstance(kind, str):
            self.read.ignored_items[kind] += 1  # e.g. Services of a `kubectl get all`
        else:
            self.read.ignored_items[NOT_A_STRING] += 1
            namespace, name = _name_of(meta, index)
            self.read.warnings.append(
                PodProblem(namespace, name, "warning", f"item {index}: kind is not a string; item ignored")
            )

    def finish_reading(self) -> None:
        """Write what is buffered and index the spill."""
        for table in self._rows:
            self._flush(table)
        self.db.executescript(_INDEXES)
        self.db.commit()
        self.pods_total = self.db.execute("SELECT count(*) FROM pods").fetchone()[0]

    # --- chunks ---

    def _load(self, body: bytes, what: str, namespace: str | None, name: str | None) -> Any:
        try:
            return pickle.loads(body)  # pickled by this process, in its private directory
        except RecursionError:  # unpickled at a deeper stack than pickled: report it, never raise
            ns = json.loads(namespace) if namespace else "?"
            self.read.bad_items.append(
                PodProblem(
                    ns, json.loads(name) if name else "?", Reason.MALFORMED_POD, f"{what} is nested too deep"
                )
            )
            return None

    def chunks(self) -> Iterator[Chunk]:
        """Chunks of whole workflows (about `chunk_pods` pods), in namespace and workflow (uid) order."""
        groups = self.db.execute(
            "SELECT ns, wf FROM pods UNION SELECT ns, name FROM workflows ORDER BY 1, 2"
        ).fetchall()
        pods: list[JSON] = []
        nodes: dict[tuple[str, str], JSON] = {}
        podless: list[Any] = []
        for namespace, workflow in groups:
            rows = self.db.execute(
                "SELECT body FROM pods WHERE ns IS ? AND wf IS ? ORDER BY seq", (namespace, workflow)
            )
            for (body,) in rows:
                pod = self._load(body, "pod", namespace, None)
                if pod is not None:
                    pods.append(pod)
                    if workflow is None and len(pods) >= self.chunk_pods:
                        # Pods of no workflow (or a malformed label) need no company: cut anywhere.
                        yield self._chunk(pods, nodes, podless)
                        pods, nodes, podless = [], {}, []
            self._add_workflows(namespace, workflow, nodes, podless)
            if len(pods) + len(podless) >= self.chunk_pods:
                yield self._chunk(pods, nodes, podless)
                pods, nodes, podless = [], {}, []
        if pods or podless:
            yield self._chunk(pods, nodes, podless)

    def _add_workflows(
        self, namespace: str | None, name: str | None, nodes: dict[tuple[str, str], JSON], podless: list[Any]
    ) -> None:
        """The Pod nodes of the Workflows of this group, and their steps whose pod is not in the dump."""
        if name is None:
            return
        rows = self.db.execute(
            "SELECT body FROM workflows WHERE ns IS ? AND name IS ? ORDER BY seq", (namespace, name)
        )
        for (body,) in rows:
            workflow = self._load(body, "Workflow", namespace, None)
            if workflow is None:
                continue
            part = PassInputs(pods=[], taskresults={}, nodes=nodes, podless_steps=podless)
            _add_workflow(part, workflow, self.present, self.options)
            self.read.problems += part.problems

    def _chunk(self, pods: list[JSON], nodes: dict[tuple[str, str], JSON], podless: list[Any]) -> Chunk:
        """The chunk, with the WorkflowTaskResults of its pods' steps."""
        results: dict[tuple[str, str], JSON] = {}
        for pod in pods:
            where = pod_node_id(pod)
            if where is None or (namespace := _key(where[0])) is None:
                continue
            for (body,) in self.db.execute(
                "SELECT body FROM results WHERE ns = ? AND name = ?", (namespace, _key(where[1]))
            ):
                result = self._load(body, "WorkflowTaskResult", namespace, _key(where[1]))
                if isinstance(result, dict):
                    results[where] = result
        return Chunk(pods, results, nodes, podless)


def read_dump(path: str, scope: Scope, options: ReconcileOptions, chunk_pods: int) -> DumpSource:
    """Read and spill the dump at `path` (the part within `scope`); ScopeError if it cannot be read.

    Returns the DumpSource whose `chunks()` the pass takes; close it afterwards.
    """
    source = DumpSource(chunk_pods, options)
    try:
        with Path(path).open("rb") as handle:
            for index, item in enumerate(DumpReader(handle, path).items()):
                source.add(index, item, scope)
        source.finish_reading()
    except OSError as exc:
        source.close()
        raise ScopeError(f"cannot read {path}: {exc.strerror or exc}") from None
    except BaseException:
        source.close()
        raise
    return source
