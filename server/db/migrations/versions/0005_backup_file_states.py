"""backup file states: what became of each backup run's file; damaged newest good backup

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-04 20:30:00.000000
"""
from alembic import op
import sqlalchemy as sa
import sqlmodel


revision = '0005'
down_revision = '0004'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('runs', schema=None) as batch_op:
        batch_op.add_column(sa.Column('backup_file', sqlmodel.sql.sqltypes.AutoString(length=200), nullable=False, server_default=''))
        batch_op.add_column(sa.Column('file_state', sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False, server_default=''))
        batch_op.create_index('ix_runs_site_backup_file', ['site_id', 'backup_file'], unique=False)
    with op.batch_alter_table('sites', schema=None) as batch_op:
        batch_op.add_column(sa.Column('damaged_backup_at', sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column('damaged_backup_file', sqlmodel.sql.sqltypes.AutoString(), nullable=False, server_default=''))


def downgrade() -> None:
    with op.batch_alter_table('sites', schema=None) as batch_op:
        batch_op.drop_column('damaged_backup_file')
        batch_op.drop_column('damaged_backup_at')
    with op.batch_alter_table('runs', schema=None) as batch_op:
        batch_op.drop_index('ix_runs_site_backup_file')
        batch_op.drop_column('file_state')
        batch_op.drop_column('backup_file')
