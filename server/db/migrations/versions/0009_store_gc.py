"""store gc: chunk condemnation and state, the maintenance lease, maintenance runs

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-07 04:55:00.000000
"""
from alembic import op
import sqlalchemy as sa
import sqlmodel


revision = '0009'
down_revision = '0008'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('store_chunks', schema=None) as batch_op:
        batch_op.add_column(sa.Column('condemned_at', sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column('state', sa.String(length=16), nullable=False, server_default='stored'))
    op.create_table('maintenance_lease',
    sa.Column('name', sqlmodel.sql.sqltypes.AutoString(length=32), nullable=False),
    sa.Column('owner', sqlmodel.sql.sqltypes.AutoString(length=128), nullable=False),
    sa.Column('expires_at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('name')
    )
    op.create_table('maintenance_runs',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('started_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('finished_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('owner', sqlmodel.sql.sqltypes.AutoString(length=128), nullable=False),
    sa.Column('dry_run', sa.Boolean(), nullable=False),
    sa.Column('outcome', sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False),
    sa.Column('summary_json', sa.Text(), nullable=False),
    sa.Column('error', sa.Text(), nullable=False),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('maintenance_runs', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_maintenance_runs_started_at'), ['started_at'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('maintenance_runs', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_maintenance_runs_started_at'))
    op.drop_table('maintenance_runs')
    op.drop_table('maintenance_lease')
    with op.batch_alter_table('store_chunks', schema=None) as batch_op:
        batch_op.drop_column('state')
        batch_op.drop_column('condemned_at')
