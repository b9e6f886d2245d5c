"""The questions users ask of the verdicts, as parameterised queries (never string-built filters)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import text
from sqlalchemy.orm import Session

RESULT_COLUMNS = ("image_id", "url", "domain", "status", "p_ai", "label", "reason", "top_family", "provenance",
                  "error_code", "error_detail", "model_name", "model_version", "scored_at")


@dataclass(frozen=True)
class ResultFilter:
    job_id: int | None = None
    label: str | None = None  # ai | real | uncertain
    min_score: float | None = None
    domain: str | None = None
    since: datetime | None = None
    status: str | None = None  # done | failed | queued | running
    limit: int | None = None


def query_results(session: Session, flt: ResultFilter) -> list[dict[str, Any]]:
    """One row per image: its status and the latest verdict (newest active model first).

    ``label`` is the pixels' unless metadata declared the image AI-made; ``reason`` says which, ``p_ai`` is
    always the pixel score and ``provenance`` the strongest metadata evidence, agreeing or not."""
    clauses, params = [], {}
    if flt.job_id is not None:
        clauses.append("i.id IN (SELECT image_id FROM job_images WHERE job_id = :job_id)")
        params["job_id"] = flt.job_id
    if flt.label is not None:
        clauses.append("lv.label = :label")
        params["label"] = flt.label
    if flt.min_score is not None:
        clauses.append("lv.p_ai >= :min_score")
        params["min_score"] = flt.min_score
    if flt.domain is not None:
        clauses.append("i.domain = :domain")
        params["domain"] = flt.domain.lower()
    if flt.since is not None:
        clauses.append("i.finished_at >= :since")
        params["since"] = flt.since
    if flt.status is not None:
        clauses.append("i.status = :status")
        params["status"] = flt.status
    sql = (
        "SELECT i.id AS image_id, i.url, i.domain, i.status, lv.p_ai, lv.label, lv.reason, lv.top_family, "
        "i.provenance, i.error_code, i.error_detail, lv.model_name, lv.model_version, lv.scored_at "
        "FROM images i LEFT JOIN latest_verdicts lv ON lv.image_id = i.id"
    )
    if clauses:
        sql += " WHERE " + " AND ".join(clauses)
    sql += " ORDER BY i.id"
    if flt.limit is not None:
        sql += " LIMIT :limit"
        params["limit"] = flt.limit
    return [dict(row._mapping) for row in session.execute(text(sql), params)]
