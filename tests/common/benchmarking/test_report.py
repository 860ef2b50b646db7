"""The model card's benchmark section: inserted where missing, replaced in place where present."""

from __future__ import annotations

from common.benchmarking.report import MARKER_END, MARKER_START, replace_marked_section


def test_a_card_without_speed_section_gets_one_before_limitations():
    text = "# Card\n\n## Outputs\n\ntext\n\n## Limitations\n\n- one\n"
    updated = replace_marked_section(text, "body")
    assert updated.startswith("# Card\n\n## Outputs\n\ntext\n\n## Speed\n\n")
    assert updated.endswith("## Limitations\n\n- one\n")
    assert f"{MARKER_START}\nbody\n{MARKER_END}" in updated
    assert replace_marked_section(updated, "body") == updated
