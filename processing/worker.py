"""The second process of a large import: it verifies every MAC and walks the card chains.

Storing is the slowest step of an import and the database does it on one core. So for a
large batch the importing process only stores, and this process, on the other core,
verifies the chain MACs, the card certificates and the trailer, and, when the batch has
several records per card (the importer decides), walks the card chains
(processing.reconcile.ChainWalker) over the same chunks as if every record were new, which
is the usual case. The importer adopts the walk only when storage confirmed that every
record was indeed new; otherwise it walks again itself over what was stored
(processing.importer). Nothing here touches the database.

The worker keeps its card MAC contexts from batch to batch (deriving a card key and keying
its context cost about 3 µs, six MACs), keyed by the keys' identity within this worker's life.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from processing.anomalies import Anomaly
from processing.batchfile import BatchRejected, open_batch
from processing.columns import EntryColumns
from processing.keys import CardMacs, ProcessingKeys
from processing.points_days import PointsMoved
from processing.reconcile import CardWalk, ChainWalker
from processing.verify import BatchVerifier, HeldRecord, check_envelope

_MACS: dict[int, CardMacs] = {}


@dataclass
class WalkJob:
    """What the worker needs besides the file: the states of the batch's cards before it, and the ids
    its rows will carry (anomaly evidence quotes whole rows)."""

    cards: dict[str, CardWalk]
    hotlist: dict[str, int]
    batch_id: int
    entry_id: int


@dataclass
class Verdict:
    rejected: tuple[str, str, int | None] | None  # (check, detail, record) when the batch does not verify
    cards: dict[str, CardWalk]  # the job's states after walking every record
    found: list[Anomaly]
    held: list[HeldRecord] = field(default_factory=list)  # records of a genuine batch whose certificate fails
    points_moved: PointsMoved = field(default_factory=dict)  # what the walk did to points (processing.points_days)


def verify_and_walk(path: str, keys: ProcessingKeys, chunk_records: int, job: WalkJob | None) -> Verdict:
    """Verify the batch at ``path``, and walk its records from ``job``'s card states (no job: verify only)."""
    macs = card_macs(keys)
    walker = ChainWalker(job.cards, job.hotlist, keep=0) if job is not None else None
    try:
        batch = open_batch(Path(path))
        h = batch.header
        verifier = BatchVerifier(batch, check_envelope(batch, keys), macs)
        for start, data in batch.chunks(chunk_records):
            verifier.chunk(start, data, build=False)
            if walker is not None and job is not None:
                walker.walk_columns(EntryColumns(data, h.terminal_id, h.merchant_id, job.batch_id, job.entry_id))
        verifier.finish()
    except BatchRejected as e:
        return Verdict((e.check, e.detail, e.record), {}, [])
    if walker is None:
        return Verdict(None, {}, [], verifier.held)
    return Verdict(None, walker.cards, walker.found, verifier.held, walker.points_moved)


def card_macs(keys: ProcessingKeys) -> CardMacs:
    """This worker's card MAC contexts for ``keys``, kept from job to job."""
    identity = hash((tuple(sorted(keys.txn_masters.items())), keys.system_identifier))
    macs = _MACS.get(identity)
    if macs is None:
        _MACS.clear()
        macs = _MACS[identity] = CardMacs(keys)
    return macs
