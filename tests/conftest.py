"""Shared fixtures: the reference ViT is loaded once per session."""

import pytest

from tests.models import load_reference_vit


@pytest.fixture(scope="session")
def reference():
    model, data, meta = load_reference_vit()
    return model, data, meta
