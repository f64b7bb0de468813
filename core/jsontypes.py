"""Types of JSON data, for the places where the data is genuinely free-form (a payload, a manifest read back,
a row of a stored table). Records of a known shape are dataclasses with ``to_dict``/``from_dict``; these aliases
only say "plain JSON" where nothing more is known, so mypy still checks that what goes in is JSON."""

from __future__ import annotations

from typing import TypeAlias

JSONScalar: TypeAlias = "str | int | float | bool | None"
JSONValue: TypeAlias = "JSONScalar | list[JSONValue] | dict[str, JSONValue]"
#: one JSON object (what ``json.loads`` gives for ``{...}``)
JSONObject: TypeAlias = "dict[str, JSONValue]"
