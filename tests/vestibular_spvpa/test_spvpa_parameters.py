"""Tests for the ``python -m vestibular_spvpa.parameters`` report."""

import json
import runpy
import sys

import pytest

from vestibular_spvpa.parameters import main, parameter_table


@pytest.mark.filterwarnings("ignore:'vestibular_spvpa.parameters' found in sys.modules:RuntimeWarning")
def test_markdown_table_from_command_line(monkeypatch, capsys):
    # run as ``python -m`` in-process (a subprocess would pay the MONAI import again)
    monkeypatch.setattr(sys, "argv", ["python -m vestibular_spvpa.parameters"])
    runpy.run_module("vestibular_spvpa.parameters", run_name="__main__", alter_sys=True)
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines[0].startswith("| Network (Table 1) | dims | attention |") and len(lines) == 2 + 6
    assert "| 2.5D U-Net + SpvPA | 2.5d | spvpa | 1,264,953 | 1,266,553 |" in lines
    assert "| 2D U-Net | 2d | none | 469,956 | 471,556 |" in lines
    assert "| 2.5D U-Net + AG | 2.5d | gate | 1,262,080 | 1,264,008 |" in lines


def test_json_output(capsys):
    main(["--json"])
    rows = {row["name"]: row for row in json.loads(capsys.readouterr().out)}
    assert list(rows) == [
        "2D U-Net",
        "3D U-Net",
        "2.5D U-Net",
        "2.5D U-Net + AG",
        "2.5D U-Net + PA",
        "2.5D U-Net + SpvPA",
    ]
    assert rows["3D U-Net"] == {
        "name": "3D U-Net",
        "dims": "3d",
        "attention": "none",
        "trainable_parameters": 1_363_684,
        "parameters": 1_365_284,
    }


def test_bn_statistics_add_two_values_per_bn_channel():
    rows = {row["name"]: row for row in parameter_table()}
    # 2 BN layers per block, 9 blocks (4 encoder, bottleneck, 4 decoder), running mean + variance per channel
    plain = 4 * (16 + 32 + 48 + 64 + 80 + 16 + 32 + 48 + 64)
    for name in ("2D U-Net", "3D U-Net", "2.5D U-Net", "2.5D U-Net + PA"):
        assert rows[name]["parameters"] - rows[name]["trainable_parameters"] == plain
    # attention gates add 3 BN layers per decoder level: 2 x N_l // 2 channels and 1 channel
    gates = 2 * sum(2 * (n // 2) + 1 for n in (16, 32, 48, 64))
    assert rows["2.5D U-Net + AG"]["parameters"] - rows["2.5D U-Net + AG"]["trainable_parameters"] == plain + gates
