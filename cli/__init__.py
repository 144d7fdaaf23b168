"""The `storesafe` admin CLI for MSP technicians (entry point: `cli.main:app`)."""
