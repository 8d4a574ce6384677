import sys
from pathlib import Path

import pytest

# Make tests/_support.py importable from every test module, whatever pytest's import mode.
sys.path.insert(0, str(Path(__file__).resolve().parent))

from _support import ENGINE_NAMES, get_engine


@pytest.fixture(scope="session", params=ENGINE_NAMES)
def engine(request):
    """Each test using this runs once per engine: "native" (skipped without a build) and
    "reference" (the pure-Python oracle). Session scope so hypothesis tests can use it."""
    return get_engine(request.param)


@pytest.fixture(scope="session")
def native():
    return get_engine("native")  # skips when the extension is missing


@pytest.fixture(scope="session")
def reference():
    return get_engine("reference")
