"""``runcomfy-async models``: the bundled models offline, the live catalog with a token.

* ``models`` lists the bundled (typed) models and their fields, without a network.
* ``models ID`` shows one model: a bundled one offline, any other from the live catalog.
* ``models --search TEXT [--category C] [--limit N]`` searches the live catalog.

``--json`` prints what the API said (or the bundled fields) as JSON, one document.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Mapping
from typing import Any

from ._args import EXIT_OK, UsageError

__all__ = ["models_command"]


def models_command(args: argparse.Namespace) -> int:
    """Run ``models``; return the exit code."""
    from ..models import MODELS

    live = args.search is not None or args.category is not None
    if not live and (args.model is None or args.model in MODELS):
        return _bundled(args.model, as_json=args.json)
    import asyncio

    return asyncio.run(_live(args))


def _bundled(name: str | None, *, as_json: bool) -> int:
    import msgspec

    from ..models import MODELS, describe

    names = [name] if name else sorted(MODELS)
    if as_json:
        doc = {n: [msgspec.to_builtins(f) for f in describe(MODELS[n])] for n in names}
        print(json.dumps(doc, indent=2))
        return EXIT_OK
    for each in names:
        cls = MODELS[each]
        print(f"{each}  ({cls.__name__})")
        for field in describe(cls):
            need = "required" if field.required else "optional"
            print(f"  {field.name:<18} {field.type:<13} {need:<9} {field.rule}")
        print()
    return EXIT_OK


async def _live(args: argparse.Namespace) -> int:
    import msgspec

    from ._commands import open_client

    async with open_client(args) as client:
        if args.search is not None or args.category is not None:
            page = await client.list_models(args.search, category=args.category, limit=args.limit)
            if args.json:
                print(json.dumps(msgspec.to_builtins(page), indent=2))
                return EXIT_OK
            for info in page.models:
                print(f"{info.model_id}  {_price(info.base_price_usd, info.price_unit)}")
                if info.description:
                    print(f"  {_first_line(info.description)}")
            total = page.total if page.total is not None else len(page.models)
            print(f"{len(page.models)} of {total} model(s)")
            return EXIT_OK
        if args.model is None:  # pragma: no cover - models_command routes this offline
            raise UsageError("name a model id or pass --search TEXT")
        info = await client.get_model(args.model)
        if args.json:
            print(json.dumps(msgspec.to_builtins(info), indent=2))
            return EXIT_OK
        print(f"{info.model_id}  {_price(info.base_price_usd, info.price_unit)}")
        if info.description:
            print(f"  {_first_line(info.description)}")
        _print_schema(info.input_schema or {})
        return EXIT_OK


def _price(price: float | None, unit: str | None) -> str:
    if price is None:
        return "(price unknown)"
    return f"${price:g} per {unit or 'run'}"


def _first_line(text: str) -> str:
    line = text.strip().splitlines()[0] if text.strip() else ""
    return line if len(line) <= 100 else line[:97] + "..."


def _print_schema(schema: Mapping[str, Any]) -> None:
    props = schema.get("properties")
    required = schema.get("required")
    needed = set(required) if isinstance(required, list) else set()
    for name, rule in (props or {}).items():
        if not isinstance(rule, Mapping):
            continue
        kind = str(rule.get("type", "any"))
        items = rule.get("items")
        if kind == "array" and isinstance(items, Mapping):
            kind = f"list[{items.get('type', 'any')}]"
        need = "required" if name in needed else "optional"
        print(f"  {name:<18} {kind:<13} {need:<9} {_rule_text(rule)}")


def _rule_text(rule: Mapping[str, Any]) -> str:
    parts = []
    if isinstance(rule.get("enum"), list):
        parts.append("one of: " + ", ".join(json.dumps(v) for v in rule["enum"]))
    for key, word in (("minimum", "min"), ("maximum", "max"), ("maxItems", "at most items")):
        if key in rule:
            parts.append(f"{word} {rule[key]}")
    fmt = rule.get("format") or (rule.get("items") or {}).get("format")
    if isinstance(fmt, str) and fmt.endswith(("_uri", "_uris")):
        parts.append(f"{fmt.split('_')[0]}: URL, data: URI or local file")
    if "default" in rule:
        parts.append(f"default {json.dumps(rule['default'])[:40]}")
    return "; ".join(parts)
