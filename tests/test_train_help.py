"""fer-train --help groups its flags (issue 31): each flag in one named group that says when it is needed."""
from __future__ import annotations

from fer_edge.training.train import build_parser

GROUPS = ["run", "data", "architecture", "schedule", "distillation", "label mixing", "averaging"]


def test_every_flag_is_in_a_described_group():
    p = build_parser()
    groups = {g.title: g for g in p._action_groups if g.title not in ("options", "optional arguments", "positional arguments")}
    assert list(groups) == GROUPS
    for g in groups.values():
        assert g.description and len(g.description) > 30, g.title
    grouped = {a.dest for g in groups.values() for a in g._group_actions}
    flags = {a.dest for a in p._actions if a.dest != "help"}
    assert len(flags) == 30 and flags == grouped
    for name, dests in {"distillation": {"teacher", "temperature", "soft_weight", "teacher_views"},
                        "label mixing": {"ferplus_mix"}, "averaging": {"soup"}}.items():
        assert {a.dest for a in groups[name]._group_actions} == dests


def test_help_shows_the_groups_and_the_research_page(capsys):
    text = build_parser().format_help()
    for title in GROUPS:
        assert f"\n{title}:\n" in text
    assert "docs/training.md" in text
