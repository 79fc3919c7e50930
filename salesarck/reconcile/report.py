"""The result of a reconciliation run: drift and findings as pandas DataFrames, a summary, exports."""

from __future__ import annotations

import html
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from salesarck.jsonutil import jsonable
from salesarck.reconcile.checks import DRIFT_COLUMNS, FINDING_COLUMNS

# the columns the JSON contract names (wallet_id/transaction_id of findings are internal keys)
PUBLIC_FINDING_COLUMNS = ["check", "severity", "entity_type", "entity_id", "tenant_id", "detail"]


def drift_frame(rows: list[dict[str, Any]]) -> pd.DataFrame:
    df = pd.DataFrame(rows, columns=DRIFT_COLUMNS)
    for col in ("snapshot_points", "ledger_points", "drift_points"):
        df[col] = df[col].astype("int64")
    return df.sort_values(["tenant_id", "wallet_id"], kind="stable", na_position="first").reset_index(drop=True)


def findings_frame(rows: list[dict[str, Any]]) -> pd.DataFrame:
    df = pd.DataFrame(rows, columns=FINDING_COLUMNS)
    return df.sort_values(["check", "entity_type", "entity_id", "detail"], kind="stable").reset_index(drop=True)


@dataclass
class ReconciliationReport:
    """Drifted wallets (`drift`), other findings (`findings`) and the run's summary."""

    run_id: str | None
    drift: pd.DataFrame
    findings: pd.DataFrame
    wallets_checked: int
    ledger_entries: int
    backend: str
    checks: tuple[str, ...]
    tenant_id: str | None = None
    incremental: bool = False
    recorded: bool = False
    timings: dict[str, float] = field(default_factory=dict)

    @property
    def clean(self) -> bool:
        return self.drift.empty and self.findings.empty

    @property
    def exit_code(self) -> int:
        """0 clean, 1 anything found (2, could not run, is the CLI's)."""
        return 0 if self.clean else 1

    @property
    def summary(self) -> dict[str, Any]:
        counts = self.findings.groupby("check").size().to_dict() if not self.findings.empty else {}
        if not self.drift.empty:
            counts["snapshot_drift"] = len(self.drift)
        sev = self.findings["severity"].value_counts().to_dict() if not self.findings.empty else {}
        return {
            "run_id": self.run_id, "backend": self.backend, "tenant_id": self.tenant_id,
            "incremental": self.incremental, "checks": list(self.checks),
            "wallets_checked": self.wallets_checked, "ledger_entries": self.ledger_entries,
            "drift_count": len(self.drift), "drift_points": int(self.drift["drift_points"].abs().sum()),
            "errors": int(sev.get("error", 0)) + len(self.drift), "warnings": int(sev.get("warning", 0)),
            "by_check": {k: int(v) for k, v in sorted(counts.items())},
            "timings": {k: round(v, 4) for k, v in self.timings.items()},
        }

    def to_dict(self) -> dict[str, Any]:
        """The CLI's JSON shape."""
        drift = [{k: (None if pd.isna(v) else v) for k, v in r.items()} for r in self.drift.to_dict("records")]
        findings = [{k: (None if pd.isna(v) else v) for k, v in r.items()}
                    for r in self.findings[PUBLIC_FINDING_COLUMNS].to_dict("records")]
        return jsonable({"run_id": self.run_id, "wallets_checked": self.wallets_checked,
                         "ledger_entries": self.ledger_entries, "drift": drift, "findings": findings,
                         "summary": self.summary})

    def to_json(self, path: str | Path | None = None) -> str:
        text = json.dumps(self.to_dict(), indent=2)
        if path is not None:
            Path(path).write_text(text + "\n", encoding="utf-8")
        return text

    def _paths(self, path: str | Path, ext: str) -> tuple[Path, Path]:
        base = Path(path)
        if base.suffix.lower() == f".{ext}":
            base = base.with_suffix("")
        return base.with_name(base.name + f"_drift.{ext}"), base.with_name(base.name + f"_findings.{ext}")

    def to_csv(self, path: str | Path) -> tuple[Path, Path]:
        """Write `<path>_drift.csv` and `<path>_findings.csv`; returns both paths."""
        drift_path, findings_path = self._paths(path, "csv")
        self.drift.to_csv(drift_path, index=False)
        self.findings[PUBLIC_FINDING_COLUMNS].to_csv(findings_path, index=False)
        return drift_path, findings_path

    def to_parquet(self, path: str | Path) -> tuple[Path, Path]:
        """Write `<path>_drift.parquet` and `<path>_findings.parquet`; returns both paths."""
        drift_path, findings_path = self._paths(path, "parquet")
        self.drift.to_parquet(drift_path, index=False)
        self.findings[PUBLIC_FINDING_COLUMNS].to_parquet(findings_path, index=False)
        return drift_path, findings_path

    def _repr_html_(self) -> str:
        s = self.summary
        status = "clean" if self.clean else f"{s['errors']} errors, {s['warnings']} warnings"
        head = (f"<h4>Reconciliation {html.escape(str(self.run_id or '(not recorded)'))}: {status}</h4>"
                f"<p>{s['wallets_checked']:,} wallets, {s['ledger_entries']:,} ledger entries, "
                f"backend {html.escape(self.backend)}{', incremental' if self.incremental else ''}</p>")
        parts = [head]
        if not self.drift.empty:
            parts.append("<h5>Drift</h5>" + self.drift.head(50).to_html(index=False, escape=True))
        if not self.findings.empty:
            parts.append("<h5>Findings</h5>"
                         + self.findings[PUBLIC_FINDING_COLUMNS].head(50).to_html(index=False, escape=True))
        return "".join(parts)

    def __repr__(self) -> str:
        s = self.summary
        return (f"ReconciliationReport(run_id={self.run_id!r}, wallets={s['wallets_checked']}, "
                f"drift={s['drift_count']}, findings={len(self.findings)})")
