"""The parity report's typed entries write report.json byte for byte as fer-convert always has: the shipped
NAME_parity.json files (fer-convert's own report.json) read back and written again are the same bytes."""
from __future__ import annotations

import json

import pytest

from fer_edge.convert.parity import report_texts
from fer_edge.convert.report import FormatEntry, ParityReport, Reference
from conftest import ROOT

PARITY = sorted((ROOT / "models").glob("*_parity.json"))


@pytest.mark.parametrize("path", PARITY, ids=lambda p: p.name)
def test_shipped_parity_reports_round_trip_byte_for_byte(path):
    text = path.read_text()
    doc = ParityReport.from_dict(json.loads(text))
    assert report_texts(doc)[0] == text
    assert doc.passed and doc.formats["tflite-int8"].kernels["default"].agreement >= 0.97
    assert doc.formats["tflite-int8"].spread is not None and doc.reference.recall


def test_unmeasured_entries_and_references_leave_out_what_was_not_measured():
    assert FormatEntry(path="m_fp32.tflite", bytes=10, sha256="ab").to_dict() == \
        {"path": "m_fp32.tflite", "bytes": 10, "sha256": "ab"}
    ref = Reference(path="m.keras", sha256="cd", cost={"macs": None, "parameters": 3})
    assert list(ref.to_dict()) == ["path", "sha256", "runtime", "cost"]
    assert Reference.from_dict(ref.to_dict()) == ref
