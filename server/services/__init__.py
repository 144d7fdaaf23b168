"""Server use cases: enrollment, auth, check-in, reports, status, queries."""
