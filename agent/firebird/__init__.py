"""Hot backup, verification by restore, health and online validation of a shop's Firebird database.

Entry points for the scheduler: `jobs.run_backup_job` and `jobs.run_validation_job`.
Pure domain code: no gRPC here; results are `agent.domain.reports` dataclasses.
"""
