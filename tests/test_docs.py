"""The docs that the code knows better than a writer are made from the code."""

from __future__ import annotations

from stackpulse import docgen


def test_generated_docs_are_current() -> None:
    for name in docgen.GENERATED:
        current = (docgen.DOCS / name).read_text(encoding="utf-8")
        assert docgen.render(name, current) == current, (
            f"docs/{name} is out of date: run python3 -m stackpulse.docgen"
        )


def test_every_setting_and_rule_is_documented() -> None:
    from stackpulse.services.alerts.logic import RULES

    config = (docgen.DOCS / "configuration.md").read_text(encoding="utf-8")
    for _, cls in docgen._settings_classes():
        for name in cls.model_fields:
            if name != "root":
                assert f"`{cls.variable(name)}`" in config, name
    alerts = (docgen.DOCS / "alerts.md").read_text(encoding="utf-8")
    assert all(f"`{r.id}`" in alerts for r in RULES)
