"""captions of real photographs for data preparation

Revision ID: 0003
Revises: 0001
Create Date: 2026-11-25

One row per (image bytes, captioning model, prompt): ``db.models.Caption``.
"""

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "captions",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("content_sha256", sa.String(length=64), nullable=False),
        sa.Column("model", sa.String(length=255), nullable=False),
        sa.Column("prompt", sa.String(length=255), nullable=False),
        sa.Column("caption", sa.Text(), nullable=False),
        sa.Column("path", sa.Text(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_captions")),
        sa.UniqueConstraint("content_sha256", "model", "prompt", name="uq_captions_content_model_prompt"),
    )
    with op.batch_alter_table("captions", schema=None) as batch_op:
        batch_op.create_index("ix_captions_model", ["model"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("captions", schema=None) as batch_op:
        batch_op.drop_index("ix_captions_model")
    op.drop_table("captions")
