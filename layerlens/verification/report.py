"""`VerifyReport`: one verdict per layer call, with its errors and tolerance."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

from .. import html_blocks
from ..json_floats import decode_float, encode
from ..records import call_label
from ..render.table_text import check_format, note_lines, tabulate_text

SCHEMA = "layerlens.verify/1"
STATUSES = ("pass", "fail", "unchecked", "composite")


@dataclass(frozen=True)
class Verdict:
    """How one layer call compared with its reference.

    status: "pass" / "fail" (compared), "unchecked" (no reference, or the call
    cannot be recomputed — `note` says why), "composite" (a container: its
    children carry the checks). Errors are over all compared outputs:
    `max_abs` = max |torch - reference|, `max_rel` = max_abs / max |reference|.
    """

    name: str
    type_name: str
    call_index: int
    status: str
    reference: str | None = None
    max_abs: float | None = None
    max_rel: float | None = None
    rtol: float | None = None
    atol: float | None = None
    dtype: str | None = None
    note: str = ""

    @property
    def label(self) -> str:
        return call_label(self.name, self.call_index)


_HEADERS = ["Layer", "Type", "Status", "Reference", "Max abs err", "Max rel err", "Tolerance", "Note"]


class VerifyReport:
    """The verdicts of `layerlens.verify`, in call order."""

    def __init__(self, verdicts: Sequence[Verdict], model_type: str) -> None:
        self.verdicts = list(verdicts)
        self.model_type = model_type

    @property
    def ok(self) -> bool:
        """True when no compared layer disagreed with its reference."""
        return not self.failures

    @property
    def failures(self) -> list[Verdict]:
        return [v for v in self.verdicts if v.status == "fail"]

    @property
    def unchecked(self) -> list[Verdict]:
        return [v for v in self.verdicts if v.status == "unchecked"]

    @property
    def checked(self) -> list[Verdict]:
        return [v for v in self.verdicts if v.status in ("pass", "fail")]

    def largest_errors(self) -> dict[str, Verdict]:
        """Per layer type, the compared call with the largest relative error."""
        worst: dict[str, Verdict] = {}
        for v in self.checked:
            if v.type_name not in worst or (v.max_rel or 0) > (worst[v.type_name].max_rel or 0):
                worst[v.type_name] = v
        return worst

    def __getitem__(self, name: str) -> Verdict:
        for v in self.verdicts:
            if v.name == name:
                return v
        raise KeyError(f"no layer named {name!r} in this report")

    def table(self, fmt: str = "simple") -> str:
        """The verdicts as a table in tabulate format `fmt` (an unknown one is a ValueError)."""
        check_format(fmt)
        text = tabulate_text(self._rows(), _HEADERS, fmt)
        return "\n".join([text, *note_lines([self.summary()], fmt)])

    def _rows(self) -> list[list[str]]:
        return [
            [v.label, v.type_name, _mark(v), v.reference or "", _num(v.max_abs), _num(v.max_rel), _tol(v), v.note]
            for v in self.verdicts
        ]

    def _repr_html_(self) -> str:
        """The verdicts as a left-aligned table with the summary line, for notebooks."""
        return html_blocks.table(_HEADERS, self._rows()) + html_blocks.notes([self.summary()])

    def summary(self) -> str:
        n = len(self.checked)
        line = f"{n - len(self.failures)}/{n} layers agree with their numpy reference"
        if self.unchecked:
            line += f"; {len(self.unchecked)} unchecked ({', '.join(v.label for v in self.unchecked)})"
        return line

    def __str__(self) -> str:
        return self.table()

    def __repr__(self) -> str:
        return f"<VerifyReport of {self.model_type}: {self.summary()}>"

    def to_json(self, indent: int | None = 1) -> str:
        doc = {"schema": SCHEMA, "model_type": self.model_type, "verdicts": [_plain(asdict(v)) for v in self.verdicts]}
        return json.dumps(doc, indent=indent, allow_nan=False)

    @classmethod
    def from_json(cls, text: str) -> VerifyReport:
        """Read back `to_json`; a foreign document is a ValueError."""
        try:
            doc = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ValueError(f"not valid JSON ({exc})") from None
        if not isinstance(doc, dict) or doc.get("schema") != SCHEMA:
            raise ValueError(f"not a layerlens verify report (schema {SCHEMA!r} expected)")
        try:
            verdicts = [Verdict(**{k: _unplain(v) for k, v in item.items()}) for item in doc["verdicts"]]
        except (TypeError, KeyError) as exc:
            raise ValueError(f"malformed verify report: {exc}") from None
        return cls(verdicts, str(doc.get("model_type", "")))

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, VerifyReport):
            return NotImplemented
        return (self.verdicts, self.model_type) == (other.verdicts, other.model_type)

    __hash__ = None  # type: ignore[assignment]


def _mark(v: Verdict) -> str:
    return {"pass": "✓ pass", "fail": "✗ FAIL", "unchecked": "unchecked", "composite": "(children)"}[v.status]


def _num(x: float | None) -> str:
    return "" if x is None else f"{x:.2e}"


def _tol(v: Verdict) -> str:
    return "" if v.rtol is None else f"rtol {v.rtol:.0e}, atol {v.atol:.0e}"


def _plain(d: dict[str, Any]) -> dict[str, Any]:
    plain: dict[str, Any] = encode(d)
    return plain


def _unplain(v: Any) -> Any:
    return decode_float(v)
