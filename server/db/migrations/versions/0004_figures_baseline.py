"""figures baseline: the wrong-database guard's accepted figures and open change per site

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-04 20:30:00.000000
"""
from alembic import op
import sqlalchemy as sa


revision = '0004'
down_revision = '0003'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('sites', schema=None) as batch_op:
        batch_op.add_column(
            sa.Column('figures_baseline_json', sa.Text(), nullable=False, server_default='')
        )
        batch_op.add_column(
            sa.Column('figures_change', sa.Text(), nullable=False, server_default='')
        )
        batch_op.add_column(
            sa.Column('figures_checked_at', sa.DateTime(timezone=True), nullable=True)
        )


def downgrade() -> None:
    with op.batch_alter_table('sites', schema=None) as batch_op:
        batch_op.drop_column('figures_checked_at')
        batch_op.drop_column('figures_change')
        batch_op.drop_column('figures_baseline_json')
