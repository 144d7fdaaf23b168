"""Fleet state: the storage contract (FleetState) and its SQL implementation."""
