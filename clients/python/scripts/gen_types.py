"""Generate the SDK's REST result types (src/plutos_ai/_types_gen.py) from the protos' messages.

    python scripts/gen_types.py           # (re)write src/plutos_ai/_types_gen.py
    python scripts/gen_types.py --check   # exit 1 when the committed file differs from a fresh one

The fields, their JSON names, types and comments come from the repository's descriptor set
(gen/python/plutos/descriptors.binpb, written by `make protos` with the proto comments); this file
only says which messages the SDK exposes under which class name (its public names predate the
generator: `ProcessResult` is `ProcessResponse`, `BatchItem` is `BatchResult`...) and the few
SDK-side conventions below (a nullable message, a literal discriminator, a dict for KeyLimits).
Behaviour (properties such as `is_final`) lives in src/plutos_ai/_type_mixins.py.
"""

from __future__ import annotations

import argparse
import re
import sys
import textwrap
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent.parent  # clients/python
DESCRIPTORS = HERE.parent.parent / "gen" / "python" / "plutos" / "descriptors.binpb"
OUT = HERE / "src" / "plutos_ai" / "_types_gen.py"


@dataclass(frozen=True)
class Exposed:
    """One proto message exposed as an SDK dataclass."""

    name: str  # the SDK's class name
    message: str  # the proto message (full name)
    doc: str = ""  # replaces the proto comment as the class docstring
    request_id: bool = False  # a result: carries the X-Request-Id of its response
    mixin: str = ""  # a class of _type_mixins.py adding behaviour
    nullable: frozenset[str] = frozenset()  # message / repeated fields that are None when absent
    literal: dict[str, str] = field(default_factory=dict)  # field -> its only value (a discriminator)
    secret: frozenset[str] = frozenset()  # fields left out of repr and equality (shown once)


EXPOSED = [
    Exposed("Usage", "plutos.v1.Usage", "Token counts of one call."),
    Exposed(
        "ProcessOptions",
        "plutos.v1.ProcessOptions",
        'Generation options. ``None`` means "not set" (the server applies its default).',
        nullable=frozenset({"stop"}),
    ),
    Exposed("ProcessResult", "plutos.v1.ProcessResponse", "The result of ``process_data``.", request_id=True),
    Exposed(
        "ProcessRecord",
        "plutos.v1.GetProcessResponse",
        "A stored processing result, from ``get_process``.",
        request_id=True,
    ),
    Exposed(
        "BatchItemError", "plutos.v1.BatchItemError", "Why one batch item failed; the others are unaffected."
    ),
    Exposed(
        "BatchItem",
        "plutos.v1.BatchResult",
        "One input's result within a batch.",
        mixin="BatchItemMixin",
        nullable=frozenset({"error"}),
    ),
    Exposed(
        "BatchResult",
        "plutos.v1.BatchResponse",
        "The result of ``batch``: one item per input, in input order.",
        request_id=True,
    ),
    Exposed(
        "StreamChunk",
        "plutos.v1.StreamChunk",
        "A piece of streamed output (SSE ``event: chunk``): the text generated since the last chunk.",
        mixin="StreamChunkMixin",
        literal={"chunk": "partial"},
    ),
    Exposed(
        "StreamComplete",
        "plutos.v1.StreamComplete",
        "The end of a stream (SSE ``event: complete``): the whole output and its usage.",
        mixin="StreamCompleteMixin",
        literal={"chunk": "final"},
    ),
    Exposed("Pricing", "plutos.v1.Pricing", "USD per 1K tokens."),
    Exposed("Model", "plutos.v1.Model", "An entry of the model catalogue."),
    Exposed("UsagePeriod", "plutos.v1.UsagePeriod"),
    Exposed("UsageTotals", "plutos.v1.UsageTotals"),
    Exposed("UsageLimits", "plutos.v1.UsageLimits"),
    Exposed("UsageReport", "plutos.v1.GetUsageResponse", "The result of ``get_usage``.", request_id=True),
    Exposed(
        "Webhook",
        "plutos.v1.CreateWebhookResponse",
        "A registered webhook. Only whether a secret is set is listed; ``secret`` is set on the result of "
        "``create_webhook`` without one (the generated secret, shown this once).",
        request_id=True,
        secret=frozenset({"secret"}),
    ),
    Exposed(
        "WebhookDeletion",
        "plutos.v1.DeleteWebhookResponse",
        "The result of ``delete_webhook``.",
        request_id=True,
    ),
    # The management API.
    # Each result a method returns on its own carries its response's request id (as the others).
    Exposed(
        "ApiKey",
        "plutos.v1.ApiKey",
        "An API key as listed: the visible prefix, never the secret.",
        request_id=True,
    ),
    Exposed(
        "CreatedKey",
        "plutos.v1.CreateKeyResponse",
        "A new key and its secret (shown only here).",
        request_id=True,
    ),
    Exposed(
        "KeyRotation",
        "plutos.v1.RotateKeyResponse",
        "The replacement key, its secret (shown only here), and the key it replaced.",
        request_id=True,
    ),
    Exposed("AccountUsage", "plutos.v1.AccountUsage", "This calendar month's usage (UTC) so far."),
    Exposed("Account", "plutos.v1.Account", request_id=True),
    Exposed("AuditEvent", "plutos.v1.AuditEvent", "A change to a key or an account."),
    Exposed(
        "ProcessHistoryItem", "plutos.v1.ProcessRecord", "One record of ``list_processes`` (GET /process)."
    ),
    Exposed("DailyUsage", "plutos.v1.DailyUsage", "One UTC day and model."),
    Exposed("WebhookDelivery", "plutos.v1.WebhookDelivery", request_id=True),
    Exposed(
        "WebhookTestResult",
        "plutos.v1.TestWebhookResponse",
        "The receiver's answer to a signed ``ping``.",
        request_id=True,
    ),
]

# Messages rendered as something other than a class: KeyLimits as a dict with snake_case keys
# (``{"requests_per_minute": 60}``), absent limits left out.
AS_DICT = {"plutos.v1.KeyLimits"}

# FieldDescriptorProto.Type
DOUBLE, FLOAT, INT64, UINT64, INT32, BOOL, STRING, MESSAGE, UINT32, ENUM, SINT32, SINT64 = (
    1,
    2,
    3,
    4,
    5,
    8,
    9,
    11,
    13,
    14,
    17,
    18,
)
INTS = {INT64, UINT64, INT32, UINT32, SINT32, SINT64, 6, 7, 15, 16}
FLOATS = {DOUBLE, FLOAT}
REPEATED = 3

HEADER = '''"""Generated by clients/python/scripts/gen_types.py from protos/plutos/v1. Do not edit.

The REST results as frozen dataclasses: snake_case attributes (the proto field names) read from the
gateway's camelCase JSON. Parsing is lenient on purpose: a field the server omits takes its zero
value, and an integer sent as a string (proto3 JSON's int64 rendering) is accepted, so a newer server
never breaks an older SDK.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

{imports}
'''

HELPERS = [
    "key_limits",
    "optional_bool",
    "optional_float",
    "optional_int",
    "optional_message",
    "optional_str",
    "optional_strings",
    "parse_timestamp",
    "to_bool",
    "to_dict",
    "to_float",
    "to_int",
    "to_obj",
    "to_str",
    "to_strings",
]


def _load() -> tuple[dict[str, Any], dict[str, str], dict[tuple[str, str], str]]:
    from google.protobuf import descriptor_pb2

    fds = descriptor_pb2.FileDescriptorSet.FromString(DESCRIPTORS.read_bytes())
    messages: dict[str, Any] = {}
    message_docs: dict[str, str] = {}
    field_docs: dict[tuple[str, str], str] = {}
    for file in fds.file:
        comments = {
            tuple(loc.path): loc.leading_comments or loc.trailing_comments
            for loc in file.source_code_info.location
        }
        for i, message in enumerate(file.message_type):
            full = f"{file.package}.{message.name}"
            messages[full] = message
            message_docs[full] = comments.get((4, i), "")
            for j, f in enumerate(message.field):
                field_docs[(full, f.name)] = comments.get((4, i, 2, j), "")
    return messages, message_docs, field_docs


def _clean(comment: str) -> str:
    return " ".join(line.strip() for line in comment.strip().splitlines()).replace('"""', "'''")


def _map_entry(messages: dict[str, Any], type_name: str) -> Any:
    """The MapEntry nested message of a map field (``.plutos.v1.X.YEntry``), or None."""
    outer, _, entry = type_name.lstrip(".").rpartition(".")
    message = messages.get(outer)
    for nested in getattr(message, "nested_type", ()):
        if nested.name == entry and nested.options.map_entry:
            return nested
    return None


def _field(f: Any, owner: Exposed, names: dict[str, str], messages: dict[str, Any]) -> tuple[str, str, str]:
    """(annotation, dataclass default, from_json expression) of one field."""
    name, json_name = f.name, f.json_name
    get = f'd.get("{json_name}")'
    optional = f.proto3_optional
    repeated = f.label == REPEATED
    kind, type_name = f.type, f.type_name.lstrip(".")
    if name in owner.literal:
        value = owner.literal[name]
        return f'Literal["{value}"]', f'"{value}"', ""
    if repeated and kind == MESSAGE and _map_entry(messages, f.type_name) is not None:
        entry = _map_entry(messages, f.type_name)
        value_field = entry.field[1]
        convert, annotation = (
            ("to_int", "dict[str, int]") if value_field.type in INTS else ("to_str", "dict[str, str]")
        )
        parse = f"{{str(k): {convert}(v) for k, v in to_obj({get}).items()}}"
        return annotation, "field(default_factory=dict)", parse
    if kind == MESSAGE:
        if type_name == "google.protobuf.Timestamp":
            return "datetime | None", "None", f"parse_timestamp({get})"
        if type_name == "google.protobuf.Struct":
            return "dict[str, Any]", "field(default_factory=dict)", f"to_dict({get})"
        if type_name in AS_DICT:
            return "dict[str, int]", "field(default_factory=dict)", f"key_limits({get})"
        cls = names.get(type_name)
        if cls is None:
            raise SystemExit(f"{owner.message}.{name}: {type_name} is not exposed (add it to EXPOSED)")
        if repeated:
            return (
                f"list[{cls}]",
                "field(default_factory=list)",
                f"[{cls}.from_json(x) for x in v] if isinstance(v := {get}, list) else []",
            )
        if name in owner.nullable:
            return f"{cls} | None", "None", f"optional_message({cls}.from_json, {get})"
        return cls, f"field(default_factory={cls})", f"{cls}.from_json({get})"
    if repeated:
        if name in owner.nullable:
            return "list[str] | None", "None", f"optional_strings({get})"
        return "list[str]", "field(default_factory=list)", f"to_strings({get})"
    if kind in INTS:
        return ("int | None", "None", f"optional_int({get})") if optional else ("int", "0", f"to_int({get})")
    if kind in FLOATS:
        return (
            ("float | None", "None", f"optional_float({get})")
            if optional
            else ("float", "0.0", f"to_float({get})")
        )
    if kind == BOOL:
        return (
            ("bool | None", "None", f"optional_bool({get})")
            if optional
            else ("bool", "False", f"to_bool({get})")
        )
    if kind in (STRING, ENUM):
        return ("str | None", "None", f"optional_str({get})") if optional else ("str", '""', f"to_str({get})")
    raise SystemExit(f"{owner.message}.{name}: field type {kind} is not handled")


def render() -> str:
    messages, message_docs, field_docs = _load()
    names = {e.message: e.name for e in EXPOSED}
    out = ["__all__ = [", *sorted(f'    "{e.name}",' for e in EXPOSED), "]", ""]
    for e in EXPOSED:
        message = messages.get(e.message)
        if message is None:
            raise SystemExit(f"{e.message} is not in {DESCRIPTORS}")
        fields = list(message.field)
        # Literal discriminators last: the data fields keep their places for positional use.
        fields.sort(key=lambda f: f.name in e.literal)
        bases = f"({e.mixin})" if e.mixin else ""
        doc = e.doc or _clean(message_docs.get(e.message, "")) or f"``{e.message}``."
        doc_lines = textwrap.wrap(f'"""{doc}"""', 106, initial_indent="    ", subsequent_indent="    ")
        out += ["", "@dataclass(frozen=True)", f"class {e.name}{bases}:", *doc_lines, ""]
        parse: list[str] = []
        for f in fields:
            annotation, default, expression = _field(f, e, names, messages)
            comment = _clean(field_docs.get((e.message, f.name), ""))
            if comment:
                out += textwrap.wrap(comment, 106, initial_indent="    #: ", subsequent_indent="    #: ")
            if f.name in e.secret:
                default = f"field(default={default}, compare=False, repr=False, kw_only=True)"
            out.append(f"    {f.name}: {annotation} = {default}")
            if expression:
                parse.append(f"            {f.name}={expression},")
        if e.request_id:
            out += [
                "    #: The ``X-Request-Id`` of the response that carried this result (quote it when"
                " reporting a problem).",
                "    request_id: str | None = field(default=None, compare=False, kw_only=True)",
            ]
        out += [
            "",
            "    @classmethod",
            f"    def from_json(cls, data: Any) -> {e.name}:",
            "        d = to_obj(data)",
            "        return cls(",
            *parse,
            "        )",
            "",
        ]
    body = "\n".join(out).rstrip() + "\n"
    used = [h for h in HELPERS if re.search(rf"\b{h}\(", body)]
    mixins = sorted({e.mixin for e in EXPOSED if e.mixin})
    imports = "from ._parsing import " + ", ".join(used) + "\n"
    imports += "from ._type_mixins import " + ", ".join(mixins) + "\n"
    return HEADER.replace("{imports}", imports) + body


def _format(text: str) -> str:
    """ruff's formatting (the SDK's own settings), so the output is what `ruff format` keeps."""
    import subprocess

    ruff = Path(sys.executable).with_name("ruff")
    result = subprocess.run(
        [str(ruff) if ruff.exists() else "ruff", "format", "--stdin-filename", str(OUT), "-"],
        input=text,
        capture_output=True,
        text=True,
        check=True,
        cwd=HERE,
    )
    return result.stdout


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--check", action="store_true", help="verify the committed file is up to date")
    args = parser.parse_args(argv)
    text = _format(render())
    if args.check:
        if OUT.exists() and OUT.read_text(encoding="utf-8") == text:
            print(f"{OUT.relative_to(HERE)} is up to date")
            return 0
        stale = f"{OUT.relative_to(HERE)} is stale: run python clients/python/scripts/gen_types.py"
        print(stale, file=sys.stderr)
        return 1
    OUT.write_text(text, encoding="utf-8")
    print(f"generated {len(EXPOSED)} types into {OUT.relative_to(HERE)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
