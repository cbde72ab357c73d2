"""Checking a commit's write set against the catalog and schema (pure, no I/O).

Runners compute index keys; the txn service recomputes the new keys from the
new document and refuses anything that does not match, so a malformed write set
cannot corrupt an index. Old keys come from the runner's snapshot read of the
document, and any change to that document since is an OCC conflict.
"""

from __future__ import annotations

from syncline._errors import InvalidWriteSetError, SynclineError
from syncline.database import DataModel, index_key
from syncline.txn import CommitRequest
from syncline.values import id_table_number


def validate_commit(request: CommitRequest, model: DataModel) -> None:
    """Raise InvalidWriteSetError naming the first problem; nothing is written."""
    for index_id in request.read_set.intervals:
        if index_id not in model.index_ids:
            raise InvalidWriteSetError(f"reads: unknown index id {index_id}")
    for i, write in enumerate(request.writes):
        where = f"writes[{i}] ({write.doc_id})"
        table = model.table_by_number(write.table_number)
        if table is None:
            raise InvalidWriteSetError(f"{where}: unknown table number {write.table_number}")
        if id_table_number(write.doc_id) != write.table_number:
            raise InvalidWriteSetError(f"{where}: the id is not an id of table {table.name!r}")
        if write.new is not None:
            if write.new.get("_id") != write.doc_id:
                raise InvalidWriteSetError(f"{where}: the document's _id does not match")
            if not isinstance(write.new.get("_creationTime"), float):
                raise InvalidWriteSetError(f"{where}: the document has no _creationTime")
            try:
                model.check_document(table, write.new, path=table.name)
            except SynclineError as exc:
                raise InvalidWriteSetError(f"{where}: {exc.message}") from exc
        changes = {c.index_id: c for c in write.index_changes}
        if set(changes) != {index.index_id for index in table.indexes.values()}:
            raise InvalidWriteSetError(
                f"{where}: index changes must cover exactly the indexes of {table.name!r}"
            )
        for index in table.indexes.values():
            change = changes[index.index_id]
            expected = index_key(index, write.new) if write.new is not None else None
            if change.new_key != expected:
                raise InvalidWriteSetError(
                    f"{where}: the key for index {index.name!r} does not match the document"
                )
            if write.new is None and change.old_key is None:
                raise InvalidWriteSetError(f"{where}: a delete must name the keys it removes")
