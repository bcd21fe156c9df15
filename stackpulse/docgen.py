"""The parts of docs/ that the code knows better than a writer: settings, rules, routes.

`python3 -m stackpulse.docgen` writes them; `--check` fails (exit 1) when a committed
file differs, which the tests run, so the docs cannot drift from the code.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from datetime import timedelta
from pathlib import Path

from pydantic.fields import FieldInfo

from stackpulse.kernel.durations import format_duration, seconds_of
from stackpulse.kernel.settings import ComponentSettings

DOCS = Path(__file__).resolve().parent.parent / "docs"
BEGIN = "<!-- generated: do not edit below; python3 -m stackpulse.docgen -->"


def _settings_classes() -> list[tuple[str, type[ComponentSettings]]]:
    from stackpulse.gateway.settings import GatewaySettings
    from stackpulse.services.alerts.settings import AlertServiceSettings, AlertSettings
    from stackpulse.services.inventory.settings import InventoryServiceSettings
    from stackpulse.services.occupancy.settings import OccupancySettings
    from stackpulse.services.reports.settings import ReportsSettings
    from stackpulse.web.settings import ApiSettings

    return [
        ("Gateway", GatewaySettings),
        ("Occupancy service", OccupancySettings),
        ("Inventory service", InventoryServiceSettings),
        ("Alert rules (alerts service and API)", AlertSettings),
        ("Alerts service", AlertServiceSettings),
        ("Reports service", ReportsSettings),
        ("API", ApiSettings),
    ]


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def _is_seconds(info: FieldInfo) -> bool:
    """A `kernel.durations.Seconds` field: a duration kept as float seconds."""
    return any(getattr(m, "func", None) is seconds_of for m in info.metadata)


def _default(value: object) -> str:
    if isinstance(value, timedelta):
        return format_duration(value)
    if value == "" or value is None:
        return "(empty)"
    return str(value)


def settings_tables() -> str:
    out: list[str] = []
    for title, cls in _settings_classes():
        out += [f"### {title}", "", "| variable | default | meaning |", "|---|---|---|"]
        for name, info in cls.model_fields.items():
            if name == "root":
                continue  # from --root, not a variable of its own
            names = cls_variables(cls, name)
            shown = "`" + names[0] + "`"
            if len(names) > 1:
                shown += " (also " + ", ".join(f"`{n}`" for n in names[1:]) + ")"
            default = info.get_default(call_default_factory=True)
            if hasattr(default, "get_secret_value"):
                default = "(secret)"
            elif _is_seconds(info) and isinstance(default, int | float):
                default = timedelta(seconds=default)
            out.append(
                f"| {shown} | `{_cell(_default(default))}` | {_cell(info.description or '')} |"
            )
        out.append("")
    return "\n".join(out)


def cls_variables(cls: type[ComponentSettings], name: str) -> list[str]:
    from stackpulse.kernel.settings import _variables

    return _variables(cls, name)


def rules_table() -> str:
    from stackpulse.services.alerts.logic import RULES

    out = [
        "| rule | severity | subject | fed by | opens when | clears when | settings |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in RULES:
        settings = ", ".join(f"`{t}`" for t in r.thresholds) or "—"
        out.append(
            f"| `{r.id}` ({_cell(r.title)}) | {r.severity.value} | {r.subject} | "
            f"{_cell(r.source)} | {_cell(r.condition)} | {_cell(r.clear)} | {settings} |"
        )
    return "\n".join(out) + "\n"


def routes_table() -> str:
    from stackpulse.kernel.layout import Layout
    from stackpulse.services.alerts import entry as alerts
    from stackpulse.services.inventory import entry as inventory
    from stackpulse.services.inventory.view import InventoryView
    from stackpulse.services.occupancy import entry as occupancy
    from stackpulse.services.occupancy.view import OccupancyView
    from stackpulse.services.reports import entry as reports
    from stackpulse.web.app import build_app

    layout = Layout.model_validate({"site": "main", "name": "Docs", "zones": []})

    class _NoBook:  # the routes are listed, never called
        pass

    parts = [
        occupancy.web_part(OccupancyView()),
        inventory.web_part(InventoryView()),
        alerts.web_part(_NoBook()),  # type: ignore[arg-type]
        reports.web_part(),
    ]
    spec = build_app([layout], parts).openapi()
    out = ["| method | path | tag | what |", "|---|---|---|---|"]
    for path, ops in sorted(spec["paths"].items()):
        for method, op in sorted(ops.items()):
            tag = ", ".join(op.get("tags", [])) or "—"
            summary = op.get("description", op.get("summary", "")).strip().split("\n")[0]
            out.append(f"| {method.upper()} | `{path}` | {tag} | {_cell(summary)} |")
    return "\n".join(out) + "\n"


GENERATED = {
    "configuration.md": settings_tables,
    "alerts.md": rules_table,
    "api.md": routes_table,
}


def render(name: str, current: str) -> str:
    """The doc with everything below its marker made anew."""
    head = current.split(BEGIN, 1)[0].rstrip() + "\n\n" if BEGIN in current else current
    return head + BEGIN + "\n\n" + GENERATED[name]()


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    check = "--check" in args
    stale = []
    for name in GENERATED:
        path = DOCS / name
        current = path.read_text(encoding="utf-8") if path.exists() else f"# {name}\n"
        fresh = render(name, current)
        if fresh != current:
            stale.append(name)
            if not check:
                path.write_text(fresh, encoding="utf-8")
    if check and stale:
        print(f"docs out of date: {', '.join(stale)}; run python3 -m stackpulse.docgen")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
