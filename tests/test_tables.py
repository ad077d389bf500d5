"""The one table renderer (runtime/table.py) and `archc check --macs`."""
from __future__ import annotations

from archcompiler.cli.main import main
from runtime.table import render_table
from tests.conftest import ROOT


def test_text_and_markdown_tables():
    text = render_table(["Model", "Acc [95% CI]"], [["a", "48.0%"], ["bb", "7.5%"], ["Total", "1"]], right=[False, True], rule_before=[2])
    assert text.splitlines() == ["Model  Acc [95% CI]", "-----  ------------", "a             48.0%", "bb             7.5%",
                                 "-----  ------------", "Total             1"]  # brackets print as written, not as markup
    md = render_table(["a", "b|c"], [["1", "2"]], right=[False, True], fmt="markdown")
    assert md == "| a | b\\|c |\n| --- | ---: |\n| 1 | 2 |\n"


def test_check_macs_matches_torchvision_convention(capsys):
    """torchvision publishes resnet18 at 1.81 GFLOPS, counting a multiply-add once."""
    assert main(["check", str(ROOT / "specs/examples/resnet18.yaml"), "--macs"]) == 0
    out = capsys.readouterr().out
    total = next(line for line in out.splitlines() if line.startswith("Total"))
    assert "MACs" in out.splitlines()[1] and total.endswith("1.814 G")
    assert "MACs count a multiply-add as 1" in out
    assert main(["check", str(ROOT / "specs/examples/resnet18.yaml")]) == 0
    assert "3.628 G" in capsys.readouterr().out  # FLOPs: twice the MACs
