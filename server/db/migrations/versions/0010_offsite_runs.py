"""off-site copies, drills and store checks: site facts, runs.backup_run_id, store_damage

Revision ID: 0010
Revises: 0008
Create Date: 2026-12-07 05:00:00.000000
"""
from alembic import op
import sqlalchemy as sa
import sqlmodel


revision = '0010'
down_revision = '0008'
branch_labels = None
depends_on = None

_S = sqlmodel.sql.sqltypes.AutoString


def upgrade() -> None:
    op.create_table('store_damage',
    sa.Column('site_id', sa.Integer(), nullable=False),
    sa.Column('chunk_id', _S(length=64), nullable=False),
    sa.Column('state', _S(length=16), nullable=False),
    sa.Column('found_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['site_id'], ['sites.id'], ),
    sa.PrimaryKeyConstraint('site_id', 'chunk_id')
    )
    with op.batch_alter_table('runs', schema=None) as batch_op:
        batch_op.add_column(sa.Column('backup_run_id', _S(length=64), nullable=False, server_default=''))
        batch_op.create_index('ix_runs_site_backup_run', ['site_id', 'backup_run_id'], unique=False)
    with op.batch_alter_table('sites', schema=None) as batch_op:
        batch_op.add_column(sa.Column('last_offsite_at', sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column('last_offsite_backup_run_id', _S(length=64), nullable=False, server_default=''))
        batch_op.add_column(sa.Column('last_offsite_backup_at', sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column('last_offsite_bytes_sent', sa.BigInteger(), nullable=False, server_default='0'))
        batch_op.add_column(sa.Column('last_offsite_backup_size', sa.BigInteger(), nullable=False, server_default='0'))
        batch_op.add_column(sa.Column('last_drill_at', sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column('last_drill_outcome', _S(length=16), nullable=False, server_default=''))
        batch_op.add_column(sa.Column('last_drill_ok_at', sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column('last_store_check_at', sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column('store_damaged_chunks', sa.BigInteger(), nullable=False, server_default='0'))
        batch_op.add_column(sa.Column('store_damage_summary', sa.Text(), nullable=False, server_default=''))
        batch_op.add_column(sa.Column('store_check_cursor', _S(length=16), nullable=False, server_default=''))


def downgrade() -> None:
    with op.batch_alter_table('sites', schema=None) as batch_op:
        for column in (
            'store_check_cursor', 'store_damage_summary', 'store_damaged_chunks', 'last_store_check_at',
            'last_drill_ok_at', 'last_drill_outcome', 'last_drill_at',
            'last_offsite_backup_size', 'last_offsite_bytes_sent', 'last_offsite_backup_at',
            'last_offsite_backup_run_id', 'last_offsite_at',
        ):
            batch_op.drop_column(column)
    with op.batch_alter_table('runs', schema=None) as batch_op:
        batch_op.drop_index('ix_runs_site_backup_run')
        batch_op.drop_column('backup_run_id')
    op.drop_table('store_damage')
