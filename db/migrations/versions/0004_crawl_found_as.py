"""image_sources.found_as: how a crawled image was found on its page

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-03

``img``, ``srcset``, ``css``, ``icon``, ``meta``, ``link`` or ``sitemap`` (``producer.crawl.found.FoundAs``);
NULL for rows written before this revision.
"""

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("image_sources", schema=None) as batch_op:
        batch_op.add_column(sa.Column("found_as", sa.String(length=16), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("image_sources", schema=None) as batch_op:
        batch_op.drop_column("found_as")
