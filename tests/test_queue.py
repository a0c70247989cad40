"""The cell queue: atomic claims, leases that expire, and finalization by the lease holder only."""

from __future__ import annotations

import time

import pytest

from bench.run.queue import CLAIMED, FINISHED, PENDING, CellQueue

CELLS = [{"id": f"cell{i}", "cell": {"method": "m", "i": i}, "options": {"save_model": False}} for i in range(3)]


def test_claims_are_exclusive_and_expire(tmp_path):
    url = f"sqlite:///{tmp_path / 'q.db'}"
    a, b = CellQueue(url, lease_seconds=0.5), CellQueue(url, lease_seconds=0.5)
    a.add_matrix("m1", CELLS)
    a.add_matrix("m1", CELLS)  # idempotent
    assert [c.cell_id for c in b.cells("m1")] == ["cell0", "cell1", "cell2"]
    assert a.claim("cell0", "A") and not b.claim("cell0", "B")
    assert b.row("cell0").state == CLAIMED and b.row("cell0").worker == "A"
    time.sleep(0.6)
    assert b.claim("cell0", "B"), "an expired lease is taken over"
    assert not a.finish("cell0", "A", {"id": "cell0", "status": "finished"}), "A lost its claim"
    assert b.finish("cell0", "B", {"id": "cell0", "status": "finished"})
    row = a.row("cell0")
    assert row.state == FINISHED and row.finalized_by == "B" and row.finalize_count == 1
    assert not a.claim("cell0", "A"), "a finalized cell is never claimed again"
    assert [r["id"] for r in a.records("m1")] == ["cell0"]


def test_lease_is_renewed_while_held(tmp_path):
    queue = CellQueue(f"sqlite:///{tmp_path / 'q.db'}", lease_seconds=0.4)
    other = CellQueue(queue.url, lease_seconds=0.4)
    queue.add_matrix("m1", CELLS)
    assert queue.claim("cell1", "A")
    with queue.holding("cell1", "A") as lost:
        time.sleep(1.0)
        assert not other.claim("cell1", "B"), "a held lease does not expire"
    assert not lost.is_set()


def test_failed_cells_reopen_only_on_request(tmp_path):
    queue = CellQueue(f"sqlite:///{tmp_path / 'q.db'}")
    queue.add_matrix("m1", CELLS)
    assert queue.claim("cell2", "A") and queue.finish("cell2", "A", {"id": "cell2", "status": "failed"})
    assert not queue.claim("cell2", "B")
    assert queue.reopen_failed("m1") == 1 and queue.row("cell2").state == PENDING
    assert queue.claim("cell2", "B")


def test_a_cell_belongs_to_every_matrix_that_lists_it(tmp_path):
    queue = CellQueue(f"sqlite:///{tmp_path / 'q.db'}")
    queue.add_matrix("m1", CELLS[:2])
    queue.add_matrix("m2", [CELLS[1], CELLS[2]])  # cell1 was inserted by m1
    assert [c.cell_id for c in queue.cells("m2")] == ["cell1", "cell2"], "in m2's order, whoever inserted them"
    assert queue.claim("cell1", "A") and queue.finish("cell1", "A", {"id": "cell1", "status": "failed"})
    assert [r["id"] for r in queue.records("m2")] == ["cell1"] and [r["id"] for r in queue.records("m1")] == ["cell1"]
    assert queue.reopen_failed("m2") == 1 and queue.row("cell1").state == PENDING
    assert [c.cell_id for c in queue.cells()] == ["cell0", "cell1", "cell2"], "each cell once"


def test_the_insert_check_sees_queued_cells_and_refusing_changes_nothing(tmp_path):
    queue = CellQueue(f"sqlite:///{tmp_path / 'q.db'}")
    queue.add_matrix("m1", CELLS[:2])
    seen = []

    def refuse(queued):
        seen.extend(queued)
        raise ValueError("another protocol")

    with pytest.raises(ValueError):
        queue.add_matrix("m2", [CELLS[1], CELLS[2]], check=refuse)
    assert seen == [("cell0", CELLS[0]["cell"])], "only the queued cells the new matrix does not list"
    assert queue.cells("m2") == [] and len(queue.cells()) == 2


def test_a_queue_from_before_memberships_lists_its_cells_by_their_matrix(tmp_path):
    import sqlalchemy as sa

    from bench.run.queue import MEMBERS

    url = f"sqlite:///{tmp_path / 'q.db'}"
    CellQueue(url).add_matrix("m1", CELLS)
    with sa.create_engine(url).begin() as conn:
        conn.execute(sa.text(f"DROP TABLE {MEMBERS.name}"))  # as an older bench left it
    assert [c.cell_id for c in CellQueue(url).cells("m1")] == ["cell0", "cell1", "cell2"]
