"""initial schema

Revision ID: 0001
Revises:
Create Date: 2026-11-25

Tables for images, verdicts, models, jobs, crawl pages, labels and training runs,
plus the views users query: latest_verdicts, domain_summary, job_progress.
"""

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


LATEST_VERDICTS = """
CREATE VIEW latest_verdicts AS
SELECT i.id AS image_id, i.url, i.domain, i.job_id, i.provenance,
       r.model_id, m.name AS model_name, m.version AS model_version,
       r.p_ai, r.label, r.top_family, r.p_midjourney, r.p_stable_diffusion, r.p_sd_finetune,
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

VIEWS = {"latest_verdicts": LATEST_VERDICTS, "domain_summary": DOMAIN_SUMMARY, "job_progress": JOB_PROGRESS}


def upgrade() -> None:
    op.create_table(
        "jobs",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("source", sa.Text(), nullable=False),
        sa.Column("submitted", sa.Integer(), nullable=False),
        sa.Column("accepted", sa.Integer(), nullable=False),
        sa.Column("duplicates", sa.Integer(), nullable=False),
        sa.Column("rejected", sa.Integer(), nullable=False),
        sa.Column("params", sa.JSON(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_jobs")),
    )
    op.create_table(
        "models",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("name", sa.String(length=128), nullable=False),
        sa.Column("version", sa.String(length=64), nullable=False),
        sa.Column("arch", sa.String(length=128), nullable=False),
        sa.Column("role", sa.String(length=16), nullable=False),
        sa.Column("checkpoint_path", sa.Text(), nullable=False),
        sa.Column("checkpoint_sha256", sa.String(length=64), nullable=False),
        sa.Column("threshold_ai", sa.Float(), nullable=False),
        sa.Column("threshold_real", sa.Float(), nullable=False),
        sa.Column("metrics", sa.JSON(), nullable=False),
        sa.Column("config", sa.JSON(), nullable=False),
        sa.Column("active", sa.Boolean(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_models")),
        sa.UniqueConstraint("checkpoint_sha256", name=op.f("uq_models_checkpoint_sha256")),
    )
    with op.batch_alter_table("models", schema=None) as batch_op:
        batch_op.create_index(
            "uq_models_one_active",
            ["active"],
            unique=True,
            postgresql_where=sa.text("active"),
            sqlite_where=sa.text("active"),
        )

    op.create_table(
        "images",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("url", sa.Text(), nullable=False),
        sa.Column("url_hash", sa.String(length=64), nullable=False),
        sa.Column("domain", sa.String(length=255), nullable=False),
        sa.Column(
            "status",
            sa.Enum(
                "queued",
                "running",
                "done",
                "failed",
                name="work_status",
                native_enum=False,
                create_constraint=True,
                length=16,
            ),
            nullable=False,
        ),
        sa.Column("error_code", sa.String(length=32), nullable=True),
        sa.Column("error_detail", sa.Text(), nullable=True),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("job_id", sa.Integer(), nullable=True),
        sa.Column("content_sha256", sa.String(length=64), nullable=True),
        sa.Column("bytes", sa.BigInteger(), nullable=True),
        sa.Column("width", sa.Integer(), nullable=True),
        sa.Column("height", sa.Integer(), nullable=True),
        sa.Column("format", sa.String(length=16), nullable=True),
        sa.Column("provenance", sa.String(length=32), nullable=True),
        sa.Column("provenance_evidence", sa.JSON(), nullable=True),
        sa.Column("queued_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["job_id"], ["jobs.id"], name=op.f("fk_images_job_id_jobs"), ondelete="SET NULL"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_images")),
        sa.UniqueConstraint("url_hash", name=op.f("uq_images_url_hash")),
    )
    with op.batch_alter_table("images", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_images_content_sha256"), ["content_sha256"], unique=False)
        batch_op.create_index(batch_op.f("ix_images_domain"), ["domain"], unique=False)
        batch_op.create_index(batch_op.f("ix_images_finished_at"), ["finished_at"], unique=False)
        batch_op.create_index(batch_op.f("ix_images_job_id"), ["job_id"], unique=False)
        batch_op.create_index("ix_images_status_queued_at", ["status", "queued_at"], unique=False)

    op.create_table(
        "pages",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("url", sa.Text(), nullable=False),
        sa.Column("url_hash", sa.String(length=64), nullable=False),
        sa.Column("domain", sa.String(length=255), nullable=False),
        sa.Column("job_id", sa.Integer(), nullable=False),
        sa.Column("depth", sa.Integer(), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column(
            "status",
            sa.Enum(
                "queued",
                "running",
                "done",
                "failed",
                name="page_status",
                native_enum=False,
                create_constraint=True,
                length=16,
            ),
            nullable=False,
        ),
        sa.Column("error_code", sa.String(length=32), nullable=True),
        sa.Column("error_detail", sa.Text(), nullable=True),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("http_status", sa.Integer(), nullable=True),
        sa.Column("content_type", sa.String(length=255), nullable=True),
        sa.Column("images_found", sa.Integer(), nullable=False),
        sa.Column("queued_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["job_id"], ["jobs.id"], name=op.f("fk_pages_job_id_jobs"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_pages")),
        sa.UniqueConstraint("job_id", "url_hash", name="uq_pages_job_url"),
    )
    with op.batch_alter_table("pages", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_pages_domain"), ["domain"], unique=False)
        batch_op.create_index("ix_pages_job_status", ["job_id", "status"], unique=False)

    op.create_table(
        "training_runs",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column(
            "status",
            sa.Enum(
                "queued",
                "running",
                "done",
                "failed",
                name="run_status",
                native_enum=False,
                create_constraint=True,
                length=16,
            ),
            nullable=False,
        ),
        sa.Column("task_id", sa.String(length=64), nullable=True),
        sa.Column("params", sa.JSON(), nullable=False),
        sa.Column("progress", sa.JSON(), nullable=False),
        sa.Column("metrics", sa.JSON(), nullable=False),
        sa.Column("artifacts", sa.JSON(), nullable=False),
        sa.Column("model_id", sa.Integer(), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["model_id"], ["models.id"], name=op.f("fk_training_runs_model_id_models"), ondelete="SET NULL"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_training_runs")),
    )
    with op.batch_alter_table("training_runs", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_training_runs_task_id"), ["task_id"], unique=False)

    op.create_table(
        "image_sources",
        sa.Column("image_id", sa.Integer(), nullable=False),
        sa.Column("page_id", sa.Integer(), nullable=False),
        sa.Column("alt_text", sa.Text(), nullable=True),
        sa.ForeignKeyConstraint(
            ["image_id"], ["images.id"], name=op.f("fk_image_sources_image_id_images"), ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(
            ["page_id"], ["pages.id"], name=op.f("fk_image_sources_page_id_pages"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("image_id", "page_id", name=op.f("pk_image_sources")),
    )
    with op.batch_alter_table("image_sources", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_image_sources_page_id"), ["page_id"], unique=False)

    op.create_table(
        "job_images",
        sa.Column("job_id", sa.Integer(), nullable=False),
        sa.Column("image_id", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(
            ["image_id"], ["images.id"], name=op.f("fk_job_images_image_id_images"), ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(
            ["job_id"], ["jobs.id"], name=op.f("fk_job_images_job_id_jobs"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("job_id", "image_id", name=op.f("pk_job_images")),
    )
    with op.batch_alter_table("job_images", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_job_images_image_id"), ["image_id"], unique=False)

    op.create_table(
        "labels",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("image_id", sa.Integer(), nullable=False),
        sa.Column(
            "label",
            sa.Enum("ai", "real", name="true_label", native_enum=False, create_constraint=True, length=16),
            nullable=False,
        ),
        sa.Column("family", sa.String(length=32), nullable=True),
        sa.Column("note", sa.Text(), nullable=True),
        sa.Column("labelled_by", sa.String(length=128), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["image_id"], ["images.id"], name=op.f("fk_labels_image_id_images"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_labels")),
    )
    with op.batch_alter_table("labels", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_labels_image_id"), ["image_id"], unique=False)

    op.create_table(
        "verdicts",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("image_id", sa.Integer(), nullable=False),
        sa.Column("model_id", sa.Integer(), nullable=False),
        sa.Column("p_ai", sa.Float(), nullable=False),
        sa.Column(
            "label",
            sa.Enum(
                "ai",
                "real",
                "uncertain",
                name="verdict_label",
                native_enum=False,
                create_constraint=True,
                length=16,
            ),
            nullable=False,
        ),
        sa.Column("p_midjourney", sa.Float(), nullable=True),
        sa.Column("p_stable_diffusion", sa.Float(), nullable=True),
        sa.Column("p_sd_finetune", sa.Float(), nullable=True),
        sa.Column("top_family", sa.String(length=32), nullable=True),
        sa.Column("latency_ms", sa.Float(), nullable=True),
        sa.Column("worker", sa.String(length=255), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["image_id"], ["images.id"], name=op.f("fk_verdicts_image_id_images"), ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(
            ["model_id"], ["models.id"], name=op.f("fk_verdicts_model_id_models"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_verdicts")),
        sa.UniqueConstraint("image_id", "model_id", name="uq_verdicts_image_model"),
    )
    with op.batch_alter_table("verdicts", schema=None) as batch_op:
        batch_op.create_index("ix_verdicts_label_p_ai", ["label", "p_ai"], unique=False)
        batch_op.create_index(batch_op.f("ix_verdicts_model_id"), ["model_id"], unique=False)

    for sql in VIEWS.values():
        op.execute(sql)


def downgrade() -> None:
    for name in reversed(list(VIEWS)):
        op.execute(f"DROP VIEW IF EXISTS {name}")
    with op.batch_alter_table("verdicts", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_verdicts_model_id"))
        batch_op.drop_index("ix_verdicts_label_p_ai")

    op.drop_table("verdicts")
    with op.batch_alter_table("labels", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_labels_image_id"))

    op.drop_table("labels")
    with op.batch_alter_table("job_images", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_job_images_image_id"))

    op.drop_table("job_images")
    with op.batch_alter_table("image_sources", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_image_sources_page_id"))

    op.drop_table("image_sources")
    with op.batch_alter_table("training_runs", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_training_runs_task_id"))

    op.drop_table("training_runs")
    with op.batch_alter_table("pages", schema=None) as batch_op:
        batch_op.drop_index("ix_pages_job_status")
        batch_op.drop_index(batch_op.f("ix_pages_domain"))

    op.drop_table("pages")
    with op.batch_alter_table("images", schema=None) as batch_op:
        batch_op.drop_index("ix_images_status_queued_at")
        batch_op.drop_index(batch_op.f("ix_images_job_id"))
        batch_op.drop_index(batch_op.f("ix_images_finished_at"))
        batch_op.drop_index(batch_op.f("ix_images_domain"))
        batch_op.drop_index(batch_op.f("ix_images_content_sha256"))

    op.drop_table("images")
    with op.batch_alter_table("models", schema=None) as batch_op:
        batch_op.drop_index(
            "uq_models_one_active", postgresql_where=sa.text("active"), sqlite_where=sa.text("active")
        )

    op.drop_table("models")
    op.drop_table("jobs")
