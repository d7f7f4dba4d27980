"""Sessions: tests, lint, typecheck, bench, soak, integration."""

from __future__ import annotations

import nox

nox.options.sessions = ["tests", "lint", "typecheck"]
nox.options.reuse_existing_virtualenvs = True
nox.options.default_venv_backend = "venv"

PYTHON = "3.11"


@nox.session(python=PYTHON)
def tests(session: nox.Session) -> None:
    """The test suite (the same command as the README's)."""
    session.install("-e", ".[test]")
    session.run("python", "-m", "pytest", *session.posargs)


@nox.session(python=PYTHON)
def lint(session: nox.Session) -> None:
    """ruff check and ruff format --check."""
    session.install("ruff")
    session.run("ruff", "check", "aiostore", "tests", "benchmarks", "noxfile.py")
    session.run("ruff", "format", "--check", "aiostore", "tests", "benchmarks", "noxfile.py")


@nox.session(python=PYTHON)
def typecheck(session: nox.Session) -> None:
    """mypy --strict on aiostore/."""
    session.install("-e", ".[test]", "mypy")
    session.run("mypy", "--strict", "aiostore")


@nox.session(python=PYTHON)
def bench(session: nox.Session) -> None:
    """Benchmarks against the raw libraries (and peers when installed). ``-- --quick`` for CI."""
    session.install("-e", ".[test,bench]")
    session.run("python", "-m", "benchmarks", *session.posargs)
    quick = ["--quick"] if "--quick" in session.posargs else []
    session.run("python", "-m", "benchmarks.bench_probe", *quick)


@nox.session(python=PYTHON)
def soak(session: nox.Session) -> None:
    """The torture soak at full size (needs root; docs/reliability.md) and the fault-flapping
    soak. Sizes: AIOSTORE_SOAK_OPS, AIOSTORE_SOAK_FAULTS, AIOSTORE_SOAK_KILLS."""
    session.install("-e", ".[test]")
    session.run(
        "python",
        "-m",
        "pytest",
        "tests/reliability/test_soak.py",
        "tests/reliability/test_flapping.py",
        "-k",
        "soak",
        "--soak",
        *session.posargs,
    )


@nox.session(python=PYTHON)
def integration(session: nox.Session) -> None:
    """The S3 driver against a real single-node Ceph RADOS Gateway on loopback (needs root)."""
    session.install("-e", ".[test]")
    session.run(
        "python",
        "-m",
        "pytest",
        "tests/integration",
        *session.posargs,
        env={"AIOSTORE_INTEGRATION": "1"},
    )
