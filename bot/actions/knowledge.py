"""The shop's facts (data/shop.yml) and the answers written over them (faq.yml, responses.yml)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from jinja2 import StrictUndefined, TemplateError, meta
from jinja2.sandbox import SandboxedEnvironment


class KnowledgeError(ValueError):
    """A knowledge file is missing, malformed, or a template in it does not render."""


def money(value: Any, currency: str = "EUR") -> str:
    """4.95 -> '€4.95' (the shop's currency symbol, two decimals)."""
    symbol = {"EUR": "€", "GBP": "£", "USD": "$"}.get(currency, currency + " ")
    return f"{symbol}{float(value):,.2f}"


@dataclass(frozen=True)
class ShopKnowledge:
    """Facts plus named answer templates; `answer(key, **extra)` renders one."""

    facts: Mapping[str, Any]
    templates: Mapping[str, str]

    @classmethod
    def load(cls, shop: Path, *template_files: Path, shop_name: str | None = None) -> ShopKnowledge:
        facts = _read_mapping(shop)
        if shop_name:
            facts["shop"] = {**facts.get("shop", {}), "name": shop_name}
        templates: dict[str, str] = {}
        for path in template_files:
            section = _read_mapping(path)
            for group in section.values():
                if not isinstance(group, dict):
                    raise KnowledgeError(f"{path}: each top-level key must hold a mapping of templates")
                templates.update({str(k): str(v) for k, v in group.items()})
        knowledge = cls(facts=facts, templates=templates)
        knowledge.check_static()
        return knowledge

    def has(self, key: str) -> bool:
        return key in self.templates

    def answer(self, key: str, **extra: Any) -> str:
        """Render template `key` with the shop's facts and `extra` values (an order, a date...)."""
        if key not in self.templates:
            raise KnowledgeError(f"no answer template named '{key}'")
        try:
            template = _ENV.from_string(self.templates[key])
            return template.render({**self.facts, **extra}).strip()
        except TemplateError as exc:
            raise KnowledgeError(f"answer template '{key}' does not render: {exc}") from exc

    def variables(self, key: str) -> set[str]:
        """The names template `key` needs besides what Jinja2 defines itself."""
        return set(meta.find_undeclared_variables(_ENV.parse(self.templates[key])))

    def check_static(self) -> None:
        """Parse every template and render those that need only the facts, so typos fail at start-up."""
        for key, text in self.templates.items():
            try:
                names = meta.find_undeclared_variables(_ENV.parse(text))
            except TemplateError as exc:
                raise KnowledgeError(f"answer template '{key}' is not valid Jinja2: {exc}") from exc
            if names <= self.facts.keys():
                self.answer(key)  # the others need per-call values; the action tests render them

    def delivery_option(self, option_id: str) -> Mapping[str, Any] | None:
        return next((o for o in self.facts.get("delivery_options", []) if o.get("id") == option_id), None)


def _read_mapping(path: Path) -> dict[str, Any]:
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as exc:
        raise KnowledgeError(f"cannot read {path}: {exc}") from exc
    if not isinstance(data, dict):
        raise KnowledgeError(f"{path}: expected a mapping at the top level")
    return data


def _make_env() -> SandboxedEnvironment:
    env = SandboxedEnvironment(undefined=StrictUndefined, autoescape=False, keep_trailing_newline=False)
    env.filters["money"] = money
    return env


_ENV = _make_env()
