"""Segment membership cached by a number's place among the constants the conditions compare it with."""

from __future__ import annotations

from collections import Counter
from datetime import date, datetime, timezone

from carepath.definition import expression_checks as checks
from carepath.definition.context import PatientView
from carepath.definition.portrait import KINDS, KindFacts, PortraitView
from carepath.definition.segments import build_segment_set
from carepath.runtime import segments
from carepath.runtime.segment_cuts import compared_fields, position

TODAY = date(2026, 3, 2)
NOW = datetime(2026, 3, 2, 8, tzinfo=timezone.utc)


def _fields(*conditions: str) -> dict:
    trees = [checks.parse(c, condition=True) for c in conditions]
    uses = Counter(("p", u.path[1]) if u.path[0] == "portrait" else ("v", u.path[0])
                   for tree in trees for u in checks.uses(tree))
    return compared_fields(trees, uses)


def test_a_number_compared_only_with_constants_counts_by_its_place_among_them() -> None:
    found = _fields("patient.age is not none and 18 <= patient.age < 45", "patient.age >= 65",
                    "patient.portrait.visits_90d + patient.portrait.admissions_90d >= 3",
                    "patient.portrait.programmes | length >= 2", "patient.portrait.clicks_30d > 2",
                    "patient.portrait.clicks_30d in [1, 2]")
    # age: only compared; the sum, the filter and ``in`` read the others some other way
    assert found == {("v", "age"): (18, 45, 65)}
    assert position(30, (18, 45, 65)) == position(44, (18, 45, 65)) != position(45, (18, 45, 65))
    assert position(None, (18,)) is None and position(True, (0,)) is True


def _view(age: int | None, interactions: int, discharges: int) -> PatientView:
    kind = next(k.name for k in KINDS.values() if k.interaction)
    kinds = {kind: KindFacts(total=interactions, windows={30: interactions, 90: interactions}),
             "discharge": KindFacts(total=discharges, windows={30: discharges, 90: discharges})}
    portrait = PortraitView(kinds=kinds, today=TODAY, consented=True)
    born = None if age is None else date(TODAY.year - age, 1, 1)
    return PatientView(id=1, name="x", sex=None, birth_date=born, conditions=(), tags=(), tz="Asia/Shanghai",
                       language="zh", today=TODAY, portrait=portrait)


def test_cached_membership_is_what_evaluating_the_conditions_gives() -> None:
    stock = build_segment_set()
    segments._MEMBERS.clear()
    for age in (None, 0, 17, 18, 19, 44, 45, 46, 64, 65, 66, 90):
        for interactions in (0, 1, 2, 3, 4, 5, 9):
            for discharges in (0, 1, 2):
                view = _view(age, interactions, discharges)
                assert segments.members_of(view, stock, NOW) == segments._evaluate(view, stock, NOW), \
                    (age, interactions, discharges)
