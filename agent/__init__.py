"""The StoreSafe agent: hot Firebird backups, verification, image sync, reporting."""
