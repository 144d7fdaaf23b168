"""The Firebird capability: hot backup, verification by restore, health, online validation.

`capability.FirebirdBackup` is what the agent wires (agent.installed); the jobs
behind it are `jobs.run_backup_job`, `validate.run_validation_job` and
`recheck.run_recheck_job`. No transport here (a contract in .importlinter):
results are `agent.domain.reports` dataclasses.
"""
