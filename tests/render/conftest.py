"""Renderer fixtures: the hand-built Reports of reports.py."""

from __future__ import annotations

import pytest

from gradcheck_cli.records.report import Report

from .reports import healthy, recurrent, vanishing


@pytest.fixture
def vanishing_report() -> Report:
    return vanishing()


@pytest.fixture
def healthy_report() -> Report:
    return healthy()


@pytest.fixture
def recurrent_report() -> Report:
    return recurrent()
