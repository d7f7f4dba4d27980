"""The documentation stands alone and documents every option the code defines.

``docs/configuration.md`` is checked against the option definitions themselves: every field of
the ``Options`` dataclass of every driver aiostore registers (entry point group
``aiostore.drivers``), of :class:`ProbeConfig` and of :class:`ServerOptions` needs a table row in
its section — ``| `name` | type | default | meaning |`` — whose type and default agree with the
field; a row for an option the code does not have fails too. So does a store key or top-level key
the manager accepts but the page does not list, and every TOML example on the page must build.
"""

from __future__ import annotations

import collections.abc
import dataclasses
import json
import re
import tomllib
import types
import typing
from collections.abc import Iterator, Mapping
from importlib.metadata import EntryPoint, entry_points
from pathlib import Path
from typing import Any

import pytest

from aiostore import BadStoreConfiguration, StoreManager
from aiostore._manager import _TOP_LEVEL, COMMON_OPTIONS, ENTRY_POINT_GROUP
from aiostore.capabilities.probe import ProbeConfig
from aiostore.sdk import parse_options
from aiostore.web import ServerOptions
from aiostore.web._server_options import parse_server_options

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
DOCS = ROOT / "docs"
CONFIGURATION = DOCS / "configuration.md"

#: The ``[server]`` table is read by ``aiostore serve`` (not by the manager) from the same file.
SERVER_TABLE = "server"

#: What a page would say to point outside the repository: the folder next to it, a machine's
#: path, or the upper-case notes kept there (the repository's own pages are lower-case).
OUTSIDE_REFERENCES = (
    re.compile(r"\.\./shared", re.IGNORECASE),
    re.compile(r"shared\s+folder", re.IGNORECASE),
    re.compile(r"/work/"),
    re.compile(r"\b(?:CONTRACT|STYLE|FAULTS|PERFORMANCE)\.md\b"),
)

_HEADING = re.compile(r"^(#{1,6})\s+(.+?)\s*$")
_ROW = re.compile(r"^\|\s*`([^`]+)`\s*\|")
_FENCE = re.compile(r"^```(\w*)\s*$")


# -- reading the page -------------------------------------------------------------------------
def _page() -> str:
    return CONFIGURATION.read_text(encoding="utf-8")


def _outside_code(lines: list[str]) -> Iterator[tuple[int, str]]:
    """(index, line) of the lines that are not inside a fenced code block."""
    fenced = False
    for i, line in enumerate(lines):
        if _FENCE.match(line):
            fenced = not fenced
            continue
        if not fenced:
            yield i, line


def section(title: str, text: str | None = None) -> list[str]:
    """The lines under the heading whose text is ``title`` or starts with ``title + " "``, up
    to the next heading of the same or a higher level."""
    lines = (text if text is not None else _page()).splitlines()
    headings = [
        (i, len(m.group(1)), m.group(2))
        for i, line in _outside_code(lines)
        if (m := _HEADING.match(line))
    ]
    found = [h for h in headings if h[2] == title or h[2].startswith(title + " ")]
    assert len(found) == 1, f"docs/configuration.md needs exactly one heading {title!r}: {found}"
    start, level, _ = found[0]
    end = next((i for i, lvl, _ in headings if i > start and lvl <= level), len(lines))
    return lines[start + 1 : end]


def rows(lines: list[str], where: str) -> dict[str, list[str]]:
    """Option rows (``| `name` | type | default | meaning |``) of a section, by name."""
    found: dict[str, list[str]] = {}
    for _, line in _outside_code(lines):
        m = _ROW.match(line)
        if m is None:
            continue
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        name = m.group(1)
        assert len(cells) == 4 and all(cells), (
            f"{where}: the row of `{name}` needs four non-empty cells"
            f" (option | type | default | meaning), got {cells}"
        )
        assert name not in found, f"{where}: `{name}` is documented twice"
        found[name] = cells
    return found


def toml_blocks(lines: list[str]) -> list[str]:
    """The contents of the fenced ```toml blocks among ``lines``."""
    blocks: list[str] = []
    current: list[str] | None = None
    language = ""
    for line in lines:
        m = _FENCE.match(line)
        if m and current is None:
            current, language = [], m.group(1)
        elif m and current is not None:
            if language == "toml":
                blocks.append("\n".join(current))
            current = None
        elif current is not None:
            current.append(line)
    return blocks


# -- what the code defines --------------------------------------------------------------------
def _canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def builtin_drivers() -> list[EntryPoint]:
    """The drivers aiostore itself registers (third-party ones document themselves)."""
    eps = entry_points(group=ENTRY_POINT_GROUP)
    mine = {
        ep.name: ep for ep in eps if ep.dist is not None and _canonical(ep.dist.name) == "aiostore"
    }
    return [mine[name] for name in sorted(mine)]


def load_driver_class(ep: EntryPoint) -> Any:
    try:
        return ep.load()
    except ImportError as exc:
        missing = getattr(exc, "name", None) or ""
        why = (
            "its module is not in this checkout"
            if missing.split(".")[0] == "aiostore"
            else "its extra is not installed"
        )
        pytest.skip(
            f"driver {ep.name!r} is registered but cannot be imported: {why}"
            f" ({type(exc).__name__}: {exc})"
        )


def expected_type(hint: Any) -> str | None:
    """The word the *type* cell must contain for a field annotated ``hint``."""
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(hint) if a is not type(None)]
        return expected_type(args[0]) if len(args) == 1 else None
    if origin is typing.Literal:
        return "string"
    if hint is bool:
        return "boolean"
    if hint is int:
        return "integer"
    if hint is float:
        return "number"
    if hint is str:
        return "string"
    if origin in (dict, collections.abc.Mapping) or hint in (dict, Mapping):
        return "table"
    if origin in (tuple, list):
        return "list"
    return None


def expected_defaults(field: dataclasses.Field[Any]) -> tuple[str, ...]:
    """Spellings the *default* cell may contain for ``field`` (any one of them)."""
    if field.default is dataclasses.MISSING:
        if field.default_factory is dataclasses.MISSING:
            return ("required",)
        return ()  # a computed default: the cell only has to say something
    value = field.default
    if value is None:
        return ("not set",)
    if isinstance(value, bool):
        return (f"`{str(value).lower()}`",)
    if isinstance(value, int):
        return (f"`{value}`", f"`{oct(value)}`", f"`{hex(value)}`")
    if isinstance(value, float):
        forms = {repr(value)}
        if value.is_integer():
            forms.add(str(int(value)))
        return tuple(f"`{f}`" for f in sorted(forms))
    if isinstance(value, str):
        return (f"`{json.dumps(value)}`",)
    return (f"`{value}`",)


def check_against(options: type[Any], documented: dict[str, list[str]], where: str) -> None:
    """Every field of the dataclass ``options`` documented with its type and default, and no
    row for anything else. All problems are reported at once."""
    fields = {f.name: f for f in dataclasses.fields(options)}
    hints = typing.get_type_hints(options)
    problems: list[str] = []
    for name, field in fields.items():
        cells = documented.get(name)
        if cells is None:
            problems.append(f"`{name}` is not documented (add a row to the table)")
            continue
        _, type_cell, default_cell, _ = cells
        word = expected_type(hints[name])
        if word is not None and word not in type_cell.lower():
            problems.append(f"`{name}`: the type cell {type_cell!r} should say {word!r}")
        spellings = expected_defaults(field)
        if spellings and not any(s in default_cell for s in spellings):
            problems.append(
                f"`{name}`: the default cell {default_cell!r} should show {' or '.join(spellings)}"
            )
    for name in documented.keys() - fields.keys():
        problems.append(f"`{name}` is documented but {options.__qualname__} has no such field")
    assert not problems, f"docs/configuration.md, {where}:\n  " + "\n  ".join(problems)


# -- the tests --------------------------------------------------------------------------------
def test_aiostore_registers_its_drivers() -> None:
    """The parametrization below is not empty: the base install's drivers are found."""
    assert {"memory", "file", "http"} <= {ep.name for ep in builtin_drivers()}


@pytest.mark.parametrize("ep", builtin_drivers(), ids=lambda ep: ep.name)
def test_every_driver_option_is_documented(ep: EntryPoint) -> None:
    cls = load_driver_class(ep)
    where = f"driver section `{ep.name}`"
    check_against(cls.Options, rows(section(f"`{ep.name}`"), where), where)


@pytest.mark.parametrize("ep", builtin_drivers(), ids=lambda ep: ep.name)
def test_every_driver_section_has_an_example_that_builds(ep: EntryPoint) -> None:
    cls = load_driver_class(ep)
    stores: dict[str, Any] = {}
    for block in toml_blocks(section(f"`{ep.name}`")):
        for name, table in tomllib.loads(block).get("stores", {}).items():
            if table.get("driver") == ep.name:
                stores[name] = table
    assert stores, f"the `{ep.name}` section needs a TOML example with a `{ep.name}` store"
    for name, table in stores.items():
        # The options alone, valid even where the driver's backend library is missing.
        parse_options(
            name, cls.Options, {k: v for k, v in table.items() if k not in COMMON_OPTIONS}
        )
    try:
        manager = StoreManager({"stores": stores})
    except BadStoreConfiguration as exc:
        if not isinstance(exc.__cause__, ImportError):
            raise
        pytest.skip(f"driver {ep.name!r} loads its backend library lazily and it is missing: {exc}")
    assert set(manager.names) == set(stores)


def test_probe_options_are_documented() -> None:
    check_against(ProbeConfig, rows(section("`[probe]`"), "[probe]"), "[probe]")


def test_server_options_are_documented() -> None:
    check_against(ServerOptions, rows(section("`[server]`"), "[server]"), "[server]")


def test_store_keys_are_documented() -> None:
    # COMMON_OPTIONS is where the manager splits the keys every store takes from the driver's.
    documented = rows(section("Store keys"), "Store keys")
    expected = COMMON_OPTIONS
    assert expected <= documented.keys(), f"undocumented: {sorted(expected - documented.keys())}"
    assert documented.keys() <= expected, f"not store keys: {sorted(documented.keys() - expected)}"


def test_top_level_keys_are_documented() -> None:
    documented = rows(section("Top level"), "Top level")
    expected = _TOP_LEVEL | {SERVER_TABLE}
    assert expected <= documented.keys(), f"undocumented: {sorted(expected - documented.keys())}"
    assert documented.keys() <= expected, f"not top-level: {sorted(documented.keys() - expected)}"


def _importable(driver: str) -> bool:
    ep = {ep.name: ep for ep in builtin_drivers()}.get(driver)
    if ep is None:
        return False
    try:
        ep.load()
    except ImportError:
        return False
    return True


def test_every_toml_example_on_the_page_is_valid() -> None:
    """Each example parses; one whose drivers are all importable builds a manager (and its
    ``[server]`` table valid ``ServerOptions``)."""
    blocks = toml_blocks(_page().splitlines())
    assert len(blocks) >= 10
    built = 0
    for block in blocks:
        data = tomllib.loads(block)
        parse_server_options(data.pop(SERVER_TABLE, None))
        stores: Mapping[str, Any] = data.get("stores", {})
        if not all(_importable(table["driver"]) for table in stores.values()):
            continue
        try:
            StoreManager(data)
        except BadStoreConfiguration as exc:
            if not isinstance(exc.__cause__, ImportError):
                raise
            continue  # a driver's backend library is not installed here
        built += 1
    assert built >= 5


def _project_docs() -> list[Path]:
    return [README, *sorted(DOCS.rglob("*.md"))]


@pytest.mark.parametrize("path", _project_docs(), ids=lambda p: str(p.relative_to(ROOT)))
def test_docs_stand_alone(path: Path) -> None:
    """No page points at files outside the repository."""
    text = path.read_text(encoding="utf-8")
    found = [
        f"{path.relative_to(ROOT)}:{text.count(chr(10), 0, m.start()) + 1}: {m.group(0)!r}"
        for pattern in OUTSIDE_REFERENCES
        for m in pattern.finditer(text)
    ]
    assert not found, "refers to files outside the repository:\n  " + "\n  ".join(found)


def test_readme_links_the_reference_pages() -> None:
    readme = README.read_text(encoding="utf-8")
    for page in ("docs/configuration.md", "docs/contract.md"):
        assert page in readme, f"README.md should point to {page}"
        assert (ROOT / page).is_file(), f"{page} is missing"


def test_documented_extras_exist() -> None:
    """Every ``aiostore[extra]`` a page tells users to install is defined in pyproject.toml."""
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    extras = pyproject["project"]["optional-dependencies"]
    missing = [
        f"{path.relative_to(ROOT)}: aiostore[{name}]"
        for path in _project_docs()
        for m in re.finditer(r"aiostore\[([^\]]+)\]", path.read_text(encoding="utf-8"))
        for name in (n.strip() for n in m.group(1).split(","))
        if name not in extras
    ]
    assert not missing, f"extras that pyproject.toml does not define: {missing}"
