"""revocation shown on the site, admin tokens managed by name

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-04 20:10:00.000000
"""
from alembic import op
import sqlalchemy as sa
import sqlmodel


revision = '0006'
down_revision = '0005'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('sites', schema=None) as batch_op:
        batch_op.add_column(sa.Column('agent_revoked_at', sa.DateTime(timezone=True), nullable=True))
    # a site whose every agent is revoked (and none enrolled since) shows it
    op.execute(
        "UPDATE sites SET agent_revoked_at = (SELECT MAX(a.revoked_at) FROM agents a "
        "WHERE a.site_id = sites.id) WHERE enrolled_at IS NOT NULL AND NOT EXISTS "
        "(SELECT 1 FROM agents b WHERE b.site_id = sites.id AND b.revoked_at IS NULL) "
        "AND EXISTS (SELECT 1 FROM agents c WHERE c.site_id = sites.id)"
    )
    with op.batch_alter_table('agents', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_agents_revoked_at'), ['revoked_at'], unique=False)
    with op.batch_alter_table('admin_tokens', schema=None) as batch_op:
        batch_op.add_column(sa.Column('created_by', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False, server_default=''))
        batch_op.add_column(sa.Column('revoked_by', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False, server_default=''))
    # Active tokens that share a name (allowed before) keep the oldest one's name; the
    # others get their id appended, so that names are unique and revocable by name.
    conn = op.get_bind()
    rows = conn.execute(
        sa.text("SELECT id, name FROM admin_tokens WHERE revoked_at IS NULL ORDER BY created_at, id")
    ).fetchall()
    seen: set[str] = set()
    for token_id, name in rows:
        if name in seen:
            new = f"{name[:64 - len(token_id) - 1]}-{token_id}"
            conn.execute(
                sa.text("UPDATE admin_tokens SET name = :n WHERE id = :i"), {"n": new, "i": token_id}
            )
            name = new
        seen.add(name)
    with op.batch_alter_table('admin_tokens', schema=None) as batch_op:
        batch_op.alter_column('created_by', server_default=None)
        batch_op.alter_column('revoked_by', server_default=None)
        batch_op.create_index(
            'ux_admin_tokens_active_name',
            ['name'],
            unique=True,
            sqlite_where=sa.text('revoked_at IS NULL'),
            postgresql_where=sa.text('revoked_at IS NULL'),
        )


def downgrade() -> None:
    with op.batch_alter_table('admin_tokens', schema=None) as batch_op:
        batch_op.drop_index('ux_admin_tokens_active_name')
        batch_op.drop_column('revoked_by')
        batch_op.drop_column('created_by')
    with op.batch_alter_table('agents', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_agents_revoked_at'))
    with op.batch_alter_table('sites', schema=None) as batch_op:
        batch_op.drop_column('agent_revoked_at')
