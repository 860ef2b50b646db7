"""Tests for the ``python -m meningioma_agunet.parameters`` report."""

import json
import subprocess
import sys

from meningioma_agunet.parameters import main


def test_markdown_table_from_command_line():
    result = subprocess.run(
        [sys.executable, "-m", "meningioma_agunet.parameters"],
        capture_output=True,
        encoding="utf-8",
        errors="replace",
        check=True,
        timeout=120,
    )
    lines = result.stdout.strip().splitlines()
    assert lines[0].startswith("| Variant |") and len(lines) == 2 + 5
    assert "| AGUNet-MS-DS | 18,663,932 | 18,657,716 | 18.66 M | +0.02 % |" in lines
    assert "| DAGUNet-MS-DS | 31,044,090 |" in result.stdout
    assert "| UNet-FV | 16,327,874 |" in result.stdout


def test_json_output(capsys):
    main(["--json"])
    rows = {row["name"]: row for row in json.loads(capsys.readouterr().out)}
    assert list(rows) == ["UNet-FV", "AGUNet", "AGUNet-MS-DS", "DAUNet-MS-DS", "DAGUNet-MS-DS"]
    assert rows["DAUNet-MS-DS"]["parameters"] == 25_809_546
    assert rows["AGUNet"]["paper_parameters"] == 16.41e6
    assert abs(rows["AGUNet"]["difference_percent"]) < 0.1
