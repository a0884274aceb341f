"""CITATION.cff validates against the Citation File Format 1.2.0 schema (tests/data, the schema
published at https://citation-file-format.github.io/1.2.0/schema.json)."""
import json
from pathlib import Path

import jsonschema
import yaml

ROOT = Path(__file__).resolve().parents[1]


def test_citation_cff_is_valid():
    schema = json.loads((ROOT / "tests" / "data" / "cff-schema-1.2.0.json").read_text())
    cff = yaml.safe_load((ROOT / "CITATION.cff").read_text())
    jsonschema.Draft7Validator(schema, format_checker=jsonschema.FormatChecker()).validate(cff)
    assert cff["cff-version"] == "1.2.0"
    assert any("Jonsson" in str(r.get("authors")) for r in cff.get("references", []))


def test_a_broken_citation_is_refused():
    schema = json.loads((ROOT / "tests" / "data" / "cff-schema-1.2.0.json").read_text())
    bad = yaml.safe_load((ROOT / "CITATION.cff").read_text())
    del bad["authors"]
    errors = list(jsonschema.Draft7Validator(schema).iter_errors(bad))
    assert errors
