"""The shared rf-corpus (../shared/rf-corpus beside the clone, never copied in)."""
from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
CORPUS = Path(os.environ.get("RF_CORPUS", ROOT.parent / "shared" / "rf-corpus" / "corpus.jsonl"))


def load_corpus() -> list[dict]:
    if not CORPUS.exists():
        pytest.fail(f"the rf-corpus is missing at {CORPUS} (CI has ../shared beside the clone; "
                    f"set RF_CORPUS to its corpus.jsonl)")
    return [json.loads(line) for line in CORPUS.open()]


def corpus_or_empty() -> list[dict]:
    return [json.loads(line) for line in CORPUS.open()] if CORPUS.exists() else []
