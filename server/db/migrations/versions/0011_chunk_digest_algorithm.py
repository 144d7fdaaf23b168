"""chunk digest algorithm: store_chunks.digest_algorithm (sha256 for the rows before it)

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-07 17:00:00.000000
"""
from alembic import op
import sqlalchemy as sa


revision = '0011'
down_revision = '0010'
branch_labels = None
depends_on = None


def upgrade() -> None:
    # every row before this one holds a SHA-256 (agents stated nothing else): the server
    # default says so without rewriting the rows (PostgreSQL 11+ and SQLite add it in place)
    with op.batch_alter_table('store_chunks', schema=None) as batch_op:
        batch_op.add_column(sa.Column('digest_algorithm', sa.String(length=16), nullable=False, server_default='sha256'))


def downgrade() -> None:
    # refused while any chunk holds a BLAKE3 digest: the column without its algorithm
    # would call a BLAKE3 hex a SHA-256 and every store check would report it damaged
    conn = op.get_bind()
    blake3_rows = conn.execute(
        sa.text("SELECT COUNT(*) FROM store_chunks WHERE digest_algorithm <> 'sha256'")
    ).scalar_one()
    if blake3_rows:
        raise RuntimeError(
            f"{blake3_rows} stored chunks have BLAKE3 digests; a schema before 0011 cannot "
            "record them, so this downgrade is refused"
        )
    with op.batch_alter_table('store_chunks', schema=None) as batch_op:
        batch_op.drop_column('digest_algorithm')
