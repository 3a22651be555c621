"""The pair table as data (all 25 cells of DESIGN §2.2), and each cell's effect on a hand-built two-operator chain
planned by the DNNFusion planner: green fuses, red never does, yellow asks the profile database."""

import itertools

import pytest

from dnnfusion.fusion import Reason, Verdict, pair
from dnnfusion.fusion.profile_db import Profile, ProfileDB
from dnnfusion.fusion.table import chain_type
from dnnfusion.ops import MappingType as M
from tests.fusion.graphs import chain, plan_of

O, R, S, OM, MM = M.ONE_TO_ONE, M.REORGANIZE, M.SHUFFLE, M.ONE_TO_MANY, M.MANY_TO_MANY
G, Y, RED = "green", "yellow", "red"
EXPECTED = {   # (first, second): (fused type, verdict), transcribed from DESIGN §2.2
    (O, O): (O, G), (O, OM): (OM, G), (O, MM): (MM, G), (O, R): (R, G), (O, S): (S, G),
    (OM, O): (OM, G), (OM, OM): (OM, Y), (OM, MM): (None, RED), (OM, R): (OM, Y), (OM, S): (OM, Y),
    (MM, O): (MM, G), (MM, OM): (MM, Y), (MM, MM): (None, RED), (MM, R): (MM, Y), (MM, S): (MM, Y),
    (R, O): (R, G), (R, OM): (OM, Y), (R, MM): (MM, Y), (R, R): (R, G), (R, S): (R, G),
    (S, O): (S, G), (S, OM): (OM, Y), (S, MM): (MM, Y), (S, R): (R, G), (S, S): (S, G),
}
CELLS = list(itertools.product(list(M), repeat=2))


@pytest.mark.parametrize("first, second", CELLS, ids=lambda m: m.name)
def test_cell_data(first, second):
    cell = pair(first, second)
    assert (cell.fused, cell.verdict.value) == EXPECTED[(first, second)]


def test_chain_type_follows_impedance():
    assert chain_type([O, S, R, O]) is R
    assert chain_type([O, R, MM, O, S]) is MM
    assert chain_type([MM, O, MM]) is None                   # a red pair anywhere
    assert chain_type([]) is None


@pytest.mark.parametrize("first, second", CELLS, ids=lambda m: m.name)
def test_cell_on_a_two_operator_chain(first, second, tmp_path):
    db = ProfileDB(tmp_path / "p.sqlite")
    plan = plan_of(chain(first, second), db=db)
    verdict = pair(first, second).verdict
    if verdict is Verdict.GREEN:
        assert len(plan.blocks) == 1 and plan.blocks[0].mapping is pair(first, second).fused
        assert not plan.yellow
    elif verdict is Verdict.RED:
        assert len(plan.blocks) == 2
        assert [r.reason for r in plan.rejections] == [Reason.RED]
    else:
        assert len(plan.yellow) == 1 and plan.db_misses == 1
        assert len(plan.blocks) == (1 if plan.yellow[0].fused else 2)


@pytest.mark.parametrize("fused_faster", [True, False])
def test_yellow_cell_follows_the_profile_database(fused_faster, tmp_path):
    """A recorded measurement decides the yellow cell, whatever the cost model would say."""
    db = ProfileDB(tmp_path / "p.sqlite")
    model = chain(MM, S)
    first = plan_of(model, db=db)
    assert first.db_misses == 1 and first.db_hits == 0
    for row in db.rows():
        db.record(row["pattern"], Profile(1.0 if fused_faster else 3.0, 2.0, "measured"))
    again = plan_of(model, db=db)
    assert again.db_hits == 1 and again.db_misses == 0
    assert again.yellow[0].source == "profile-db" and again.yellow[0].fused is fused_faster
    assert len(again.blocks) == (1 if fused_faster else 2)
    if not fused_faster:
        assert [r.reason for r in again.rejections] == [Reason.PROFILE]


def test_a_recorded_estimate_is_not_a_profile_db_hit(tmp_path):
    """The estimate the planner keeps in the database is estimated again next time, never read as a measurement:
    the statistics and notes say which yellow cells were measured and which estimated."""
    db = ProfileDB(tmp_path / "p.sqlite")
    model = chain(MM, S)
    plan_of(model, db=db)
    assert [row["source"] for row in db.rows()] == ["estimate"]
    again = plan_of(model, db=db)
    assert (again.db_hits, again.db_misses) == (0, 1)
    assert again.yellow[0].source == "estimate" and not again.yellow[0].measured
    stats = again.stats()
    assert stats["yellow_by_source"] == {"measured": 0, "estimate": 1} and stats["yellow_estimated"]
    assert any(note.startswith("1 of 1 yellow cells were decided by the cost-model estimate (fusion/cost.py), not a "
                               "measurement: the profile database holds no measured timing") for note in again.notes)
    for row in db.rows():
        db.record(row["pattern"], Profile(1.0, 2.0, "measured"))
    measured = plan_of(model, db=db)
    assert measured.stats()["yellow_by_source"] == {"measured": 1, "estimate": 0}
    assert not measured.stats()["yellow_estimated"]
    assert measured.notes[0] == "1 of 1 yellow cells were decided by measured timings from the profile database"
    assert not any("cost-model estimate" in note for note in measured.notes)


def test_plan_notes_say_what_they_mean():
    """Notes name no document users lack, and say what O3 adds today."""
    for level in ("O2", "O3"):
        plan = plan_of(chain(MM, S), level=level)
        assert plan.notes and not any("DESIGN" in note or "§" in note for note in plan.notes)
        assert any("no profile database was given" in note for note in plan.notes)
    assert plan.notes[-1].startswith("O3 rewrote nothing")
    assert not any("code generation exists" in note for note in plan.notes)
