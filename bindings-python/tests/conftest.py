import os
import pathlib

import pytest

import workz_build

ROOT = pathlib.Path(__file__).resolve().parents[2]
STATIC_APP = ROOT / "examples" / "static-site"


@pytest.fixture
def engine(tmp_path):
    return workz_build.Engine({"cache": {"dir": str(tmp_path / "cache")},
                               "storage": {"artifactsDir": str(tmp_path / "artifacts")}})


@pytest.fixture
def static_app():
    return STATIC_APP


def small_app(name: str, body: str = "<h1>hi</h1>") -> dict:
    """An in-memory static app."""
    return {"workz.json": '{"name": "%s", "appType": "static"}' % name, "index.html": body.encode()}


@pytest.fixture
def panic_at():
    """Make the engine panic at a named point (its test-only hook) for the test's duration."""
    var = workz_build._native.PANIC_POINT_VAR

    def arm(point: str) -> None:
        os.environ[var] = point

    yield arm
    os.environ.pop(var, None)
