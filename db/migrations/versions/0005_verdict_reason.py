"""verdicts.reason: why a verdict has its label (the pixels, or provenance metadata declaring AI)

Revision ID: 0005_verdict_reason
Revises: 0004
Create Date: 2026-12-03

``pixels``, ``c2pa``, ``iptc`` or ``generator_metadata`` (``db.models.VerdictReason``); rows written before this
revision were labelled by their pixels and get ``pixels``. ``latest_verdicts`` shows the column, so the views
that read it (``domain_summary``, ``job_progress``) are dropped and created again around the change
(SQLite rebuilds the table to add its CHECK constraint, and a view over a missing table blocks that).
"""

import sqlalchemy as sa
from alembic import op

revision = "0005_verdict_reason"
down_revision = "0004"
branch_labels = None
depends_on = None

REASONS = ("pixels", "c2pa", "iptc", "generator_metadata")

# The view before (0001) and after this revision; they differ only in r.reason.
_LATEST_VERDICTS = """
CREATE VIEW latest_verdicts AS
SELECT i.id AS image_id, i.url, i.domain, i.job_id, i.provenance,
       r.model_id, m.name AS model_name, m.version AS model_version,
       r.p_ai, r.label, {reason}r.top_family, r.p_midjourney, r.p_stable_diffusion, r.p_sd_finetune,
       r.updated_at AS scored_at
FROM (
    SELECT v.*, ROW_NUMBER() OVER (
        PARTITION BY v.image_id ORDER BY m2.active DESC, m2.created_at DESC, v.model_id DESC
    ) AS rank_in_image
    FROM verdicts v JOIN models m2 ON m2.id = v.model_id
) r
JOIN images i ON i.id = r.image_id
JOIN models m ON m.id = r.model_id
WHERE r.rank_in_image = 1
"""

LATEST_VERDICTS = _LATEST_VERDICTS.format(reason="r.reason, ")
LATEST_VERDICTS_0001 = _LATEST_VERDICTS.format(reason="")

DOMAIN_SUMMARY = """
CREATE VIEW domain_summary AS
SELECT i.domain,
       COUNT(*) AS images,
       SUM(CASE WHEN i.status = 'done' THEN 1 ELSE 0 END) AS scored,
       SUM(CASE WHEN i.status = 'failed' THEN 1 ELSE 0 END) AS failed,
       SUM(CASE WHEN lv.label = 'ai' THEN 1 ELSE 0 END) AS n_ai,
       SUM(CASE WHEN lv.label = 'real' THEN 1 ELSE 0 END) AS n_real,
       SUM(CASE WHEN lv.label = 'uncertain' THEN 1 ELSE 0 END) AS n_uncertain,
       CAST(SUM(CASE WHEN lv.label = 'ai' THEN 1 ELSE 0 END) AS FLOAT)
           / NULLIF(COUNT(lv.image_id), 0) AS ai_share
FROM images i LEFT JOIN latest_verdicts lv ON lv.image_id = i.id
GROUP BY i.domain
"""

JOB_PROGRESS = """
CREATE VIEW job_progress AS
SELECT j.id AS job_id, j.kind, j.source, j.created_at, j.submitted, j.accepted, j.duplicates, j.rejected,
       (SELECT COUNT(*) FROM pages p WHERE p.job_id = j.id AND p.status = 'done') AS pages_crawled,
       (SELECT COUNT(*) FROM pages p WHERE p.job_id = j.id AND p.status = 'failed') AS pages_failed,
       (SELECT COUNT(*) FROM pages p WHERE p.job_id = j.id AND p.status IN ('queued', 'running')) AS pages_pending,
       COUNT(ji.image_id) AS images,
       SUM(CASE WHEN i.status IN ('queued', 'running') THEN 1 ELSE 0 END) AS images_pending,
       SUM(CASE WHEN i.status = 'done' THEN 1 ELSE 0 END) AS images_done,
       SUM(CASE WHEN i.status = 'failed' THEN 1 ELSE 0 END) AS images_failed,
       SUM(CASE WHEN lv.label = 'ai' THEN 1 ELSE 0 END) AS n_ai,
       CAST(SUM(CASE WHEN lv.label = 'ai' THEN 1 ELSE 0 END) AS FLOAT)
           / NULLIF(COUNT(lv.image_id), 0) AS ai_share
FROM jobs j
LEFT JOIN job_images ji ON ji.job_id = j.id
LEFT JOIN images i ON i.id = ji.image_id
LEFT JOIN latest_verdicts lv ON lv.image_id = i.id
GROUP BY j.id, j.kind, j.source, j.created_at, j.submitted, j.accepted, j.duplicates, j.rejected
"""


def _drop_views() -> None:
    for sql in ("DROP VIEW IF EXISTS job_progress", "DROP VIEW IF EXISTS domain_summary",
                "DROP VIEW IF EXISTS latest_verdicts"):
        op.execute(sql)


def _create_views(latest_verdicts: str) -> None:
    for sql in (latest_verdicts, DOMAIN_SUMMARY, JOB_PROGRESS):
        op.execute(sql)


def upgrade() -> None:
    _drop_views()
    reason = sa.Enum(*REASONS, name="verdict_reason", native_enum=False, create_constraint=True, length=32)
    with op.batch_alter_table("verdicts", schema=None) as batch_op:
        batch_op.add_column(sa.Column("reason", reason, nullable=False, server_default="pixels"))
    _create_views(LATEST_VERDICTS)


def downgrade() -> None:
    _drop_views()
    with op.batch_alter_table("verdicts", schema=None) as batch_op:
        batch_op.drop_constraint(op.f("ck_verdicts_verdict_reason"), type_="check")
        batch_op.drop_column("reason")
    _create_views(LATEST_VERDICTS_0001)
